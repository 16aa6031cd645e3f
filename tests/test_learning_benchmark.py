"""
benchmarks/learning.py's --baseline-run: a finished Mask R-CNN run stands in for training it
again only if its saved config is the one the comparison would train.
"""
import json
import os
import sys
import tempfile
import unittest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import learning  # noqa: E402


def _fake_run(run_dir, cfg, segm_ap):
    """A train_net.py output folder: its config.yaml and a metrics.json with final APs."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        f.write(json.dumps({"iteration": 9, "time": 1.5}) + "\n")
        f.write(json.dumps({"iteration": 9, "time": 2.5}) + "\n")
        f.write(json.dumps({"iteration": 10, "segm/AP": segm_ap, "bbox/AP": 40.0}) + "\n")


class TestBaselineRun(unittest.TestCase):
    def setUp(self):
        self.config = learning.MODEL_CONFIGS["mask_rcnn"]
        self.opts = ["SEED", "1"] + learning.schedule_opts(self.config, 20, 4)
        self.tmp = tempfile.TemporaryDirectory()
        self.run_dir = os.path.join(self.tmp.name, "mask_rcnn")

    def tearDown(self):
        self.tmp.cleanup()

    def test_same_config_is_reused(self):
        cfg = learning.load_config(self.config, self.opts + ["OUTPUT_DIR", self.run_dir])
        _fake_run(self.run_dir, cfg, 61.5)
        metrics = learning.reuse_run(self.run_dir, self.config, self.opts)
        self.assertEqual(metrics["results"]["segm/AP"], 61.5)
        self.assertEqual(metrics["s_per_iter"], 2.5)

    def test_other_seed_or_schedule_is_refused_naming_the_keys(self):
        cfg = learning.load_config(self.config, self.opts)
        cfg.SEED = 0
        cfg.SOLVER.MAX_ITER = 21
        _fake_run(self.run_dir, cfg, 61.5)
        with self.assertRaisesRegex(RuntimeError, r"SEED: expected 1, the run has 0") as ctx:
            learning.reuse_run(self.run_dir, self.config, self.opts)
        self.assertIn("SOLVER.MAX_ITER: expected 20, the run has 21", str(ctx.exception))

    def test_keys_added_after_the_run_are_not_differences(self):
        cfg = learning.load_config(self.config, self.opts)
        del cfg.MODEL.BLENDMASK["TRAIN_BOXES"]  # a key this project added later
        _fake_run(self.run_dir, cfg, 61.5)
        learning.reuse_run(self.run_dir, self.config, self.opts)

    def test_not_a_run(self):
        with self.assertRaisesRegex(RuntimeError, "no config.yaml"):
            learning.reuse_run(self.tmp.name, self.config, self.opts)


if __name__ == "__main__":
    unittest.main()
