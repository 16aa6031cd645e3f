"""
benchmarks/learning.py: --reuse-run and --baseline-run (a finished run of a model stands in for
training it again only if its saved config is the one the comparison would train) and --seeds
(every model once per seed, ratios to Mask R-CNN of the same seed, mean rows), with train_net.py
replaced by a fake that writes a run's files.
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest
from unittest import mock

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


# Mask AP of the fake runs: by model and seed.
FAKE_MASK_AP = {
    ("mask_rcnn", 0): 60.0, ("mask_rcnn", 3): 50.0,
    ("blendmask", 0): 57.0, ("blendmask", 3): 51.0,
}  # fmt: skip


def _fake_train_net(config_file, opts, output_dir, log_file, threads):
    """Stands in for learning.run_train_net: writes the run's config and metrics."""
    model = next(m for m, c in learning.MODEL_CONFIGS.items() if c == config_file)
    cfg = learning.load_config(config_file, opts + ["OUTPUT_DIR", output_dir])
    _fake_run(output_dir, cfg, FAKE_MASK_AP[model, cfg.SEED])
    with open(log_file, "w") as f:
        f.write("fake\n")
    return 100.0


class TestSeeds(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def _main(self, *argv):
        out = io.StringIO()
        with mock.patch.object(learning, "run_train_net", _fake_train_net):
            with contextlib.redirect_stdout(out):
                rc = learning.main(["--output", self.tmp.name, "--iters", "20", *argv])
        self.assertEqual(rc, 0)
        return out.getvalue()

    def _row(self, table, model, seed):
        line = next(
            line for line in table.splitlines() if line.split()[:2] == [model, str(seed)]
        )
        return line.split()

    def test_ratios_are_to_mask_rcnn_of_the_same_seed_and_of_the_means(self):
        table = self._main("--models", "mask_rcnn", "blendmask", "--seeds", "0", "3")
        for model, seed in FAKE_MASK_AP:
            self.assertTrue(os.path.isdir(os.path.join(self.tmp.name, f"{model}_seed{seed}")))
        # Columns: model seed iters | mask AP ... | box AP ... | s/it wall | mask x box x [| spread]
        self.assertEqual(self._row(table, "blendmask", 0)[19], "0.95")  # 57.0 / 60.0
        self.assertEqual(self._row(table, "blendmask", 3)[19], "1.02")  # 51.0 / 50.0
        mean = self._row(table, "blendmask", "mean")
        self.assertEqual(mean[4], "54.0")  # (57.0 + 51.0) / 2
        self.assertEqual(mean[19], "0.98")  # 54.0 / 55.0, not the mean of the ratios (0.985)
        self.assertEqual(mean[-1], "6.0")  # spread: 57.0 - 51.0
        self.assertEqual(self._row(table, "mask_rcnn", "mean")[-1], "10.0")

    def test_one_seed_keeps_the_single_run_layout(self):
        # (Opts come after an option of one value: --models would take "SEED" as a model.)
        table = self._main("--models", "mask_rcnn", "blendmask", "--batch", "4", "SEED", "3")
        self.assertTrue(os.path.isdir(os.path.join(self.tmp.name, "blendmask")))
        self.assertEqual(self._row(table, "blendmask", 3)[19], "1.02")
        self.assertNotRegex(table, r"\n\w+ +mean ")

    def _finished_run(self, model, seed):
        """A finished (fake) train_net.py run of ``model`` at ``seed``, 20 iterations."""
        run_dir = os.path.join(self.tmp.name, f"old_{model}_{seed}")
        config = learning.MODEL_CONFIGS[model]
        opts = ["MODEL.DEVICE", "cpu", "SEED", str(seed)] + learning.schedule_opts(config, 20, 4)
        _fake_train_net(config, opts, run_dir, run_dir + ".log", None)
        return run_dir

    def test_baseline_runs_one_per_seed(self):
        runs = [self._finished_run("mask_rcnn", seed) for seed in (0, 3)]
        table = self._main("--models", "blendmask", "--seeds", "0", "3", "--baseline-run", *runs)
        self.assertEqual(self._row(table, "blendmask", 3)[19], "1.02")
        # Given in the wrong order, each run's SEED is checked against its seed.
        with self.assertRaisesRegex(RuntimeError, "SEED: expected 0, the run has 3"):
            self._main("--models", "blendmask", "--seeds", "0", "3", "--baseline-run", *runs[::-1])

    def test_every_model_can_be_reused_and_nothing_is_trained(self):
        mask_rcnn = self._finished_run("mask_rcnn", 3)
        blendmask = self._finished_run("blendmask", 3)
        argv = ["--output", self.tmp.name, "--iters", "20", "--models", "blendmask", "--seeds", "3"]
        argv += ["--reuse-run", "blendmask", blendmask, "--reuse-run", "mask_rcnn", mask_rcnn]
        out = io.StringIO()
        must_not_train = mock.Mock(side_effect=AssertionError("trained a reused model"))
        with mock.patch.object(learning, "run_train_net", must_not_train):  # raises if called
            with contextlib.redirect_stdout(out):
                self.assertEqual(learning.main(argv), 0)
        table = out.getvalue()
        self.assertEqual(self._row(table, "blendmask", 3)[19], "1.02")  # 51.0 / 50.0
        self.assertEqual(self._row(table, "mask_rcnn", 3)[4], "50.0")

    def test_a_reused_run_of_another_model_is_refused(self):
        # Mask R-CNN's run given as BlendMask's: the saved config names another architecture.
        mask_rcnn = self._finished_run("mask_rcnn", 0)
        with self.assertRaisesRegex(RuntimeError, "a GeneralizedRCNN run, not BlendMask"):
            self._main("--models", "mask_rcnn", "--reuse-run", "blendmask", mask_rcnn)

    def test_bad_seed_and_reuse_arguments_are_refused_naming_the_option(self):
        d = self.tmp.name
        for argv, message in (
            (["--seeds", "0", "--batch", "4", "SEED", "1"], "not also as SEED"),
            (["--seeds", "0", "0"], "each seed once"),
            (["--seeds", "0", "1", "--baseline-run", d], "--baseline-run: 1 runs for 2 seeds"),
            (["--seeds", "0", "1", "--reuse-run", "blendmask", d], "blendmask: 1 runs for 2"),
            (["--reuse-run", "blendmask"], "--reuse-run blendmask: 0 runs for 1 seeds"),
            (["--reuse-run", "retinanet", d], "--reuse-run retinanet: unknown model"),
            (["--reuse-run", "mask_rcnn", d, "--baseline-run", d], "runs are given twice"),
            (["--reuse-run", "blendmask", d, "--equal-time", "60"], "needs an equal schedule"),
        ):
            err = io.StringIO()
            with self.subTest(argv=argv), contextlib.redirect_stderr(err):
                with self.assertRaises(SystemExit):
                    learning.main(["--output", d, *argv])
                self.assertIn(message, err.getvalue())


if __name__ == "__main__":
    unittest.main()
