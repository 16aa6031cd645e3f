"""
benchmarks/learning.py: --reuse-run and --baseline-run (a finished run of a model stands in for
training it again only if its saved config is the one the comparison would train), --seeds
(every model once per seed, ratios to Mask R-CNN of the same seed, mean rows) and --dataset (a
user's COCO data registered in every run, each model's class count set from it), with
train_net.py replaced by a fake that writes a run's files; and one real run on a crafted dataset.
"""

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import unittest
from unittest import mock

from data.coco_fixtures import annotation, coco_json, write_image
from detectron2.data import DatasetCatalog, MetadataCatalog
from engine.workflow_helpers import TRAIN_NET, load_script

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import learning  # noqa: E402

train_net = load_script(TRAIN_NET, "train_net")


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


def _fake_train_net(config_file, opts, output_dir, log_file, threads, datasets=()):
    """Stands in for learning.run_train_net: writes the run's config and metrics."""
    model = next(m for m, c in learning.MODEL_CONFIGS.items() if c == config_file)
    cfg = learning.load_config(config_file, opts + ["OUTPUT_DIR", output_dir])
    _fake_run(output_dir, cfg, FAKE_MASK_AP.get((model, cfg.SEED), 55.0))
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
        line = next(line for line in table.splitlines() if line.split()[:2] == [model, str(seed)])
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
        # (The opts may follow a list-valued option: its values end at the first config key.)
        table = self._main("--models", "mask_rcnn", "blendmask", "SEED", "3")
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
            (["--seeds", "0", "SEED", "1"], "not also as SEED"),
            (["--seeds", "0", "x"], "argument --seeds: invalid int value in ['0', 'x']"),
            (["--models", "mask"], "argument --models: invalid choice: 'mask' (choose from"),
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


class TestDataset(unittest.TestCase):
    """--dataset NAME JSON IMAGE_DIR: checked before anything trains, registered in every run,
    chosen by --train-dataset / --test-dataset, each model's class count set from it."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_learning_dataset_")
        cls.images = os.path.join(cls.tmp, "images")
        os.makedirs(cls.images)
        # 4 images, each with one object of each of the 2 classes ("blob", "bar").
        images = [write_image(cls.images, f"{i}.jpg", "rgb", 64, 80) for i in range(4)]
        anns = [
            annotation(i, box=box, category_id=c)
            for i in range(1, 5)
            for box, c in (((8, 8, 24, 20), 1), ((40, 24, 30, 28), 3))
        ]
        cls.json = coco_json(os.path.join(cls.tmp, "mine.json"), images, anns)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.out = tempfile.mkdtemp(dir=self.tmp)
        self.addCleanup(self._unregister)

    def _unregister(self):
        for name in ("_learn_mine", "_learn_mine_val"):
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)

    def _dataset_argv(self):
        return [
            "--dataset", "_learn_mine", self.json, self.images,
            "--dataset", "_learn_mine_val", self.json, self.images,
            "--train-dataset", "_learn_mine", "--test-dataset", "_learn_mine_val",
        ]  # fmt: skip

    def test_every_run_registers_the_dataset_with_its_class_count(self):
        runs = []

        def record(config_file, opts, output_dir, log_file, threads, datasets=()):
            runs.append((config_file, opts, output_dir, list(datasets)))
            return _fake_train_net(config_file, opts, output_dir, log_file, threads, datasets)

        argv = ["--output", self.out, "--iters", "20", *self._dataset_argv(), "SEED", "3"]
        with mock.patch.object(learning, "run_train_net", record):
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(learning.main(argv), 0)
        class_keys = {
            "mask_rcnn": ["MODEL.ROI_HEADS.NUM_CLASSES"],
            "tensormask": ["MODEL.TENSOR_MASK.NUM_CLASSES"],
            "blendmask": ["MODEL.FCOS.NUM_CLASSES", "MODEL.BASIS_MODULE.NUM_CLASSES"],
        }
        self.assertEqual(len(runs), 3)
        for config_file, opts, output_dir, datasets in runs:
            model = next(m for m, c in learning.MODEL_CONFIGS.items() if c == config_file)
            self.assertEqual(
                [tuple(spec) for spec in datasets],
                [(name, self.json, self.images) for name in ("_learn_mine", "_learn_mine_val")],
            )
            pairs = dict(zip(opts[::2], opts[1::2]))
            self.assertEqual(pairs["DATASETS.TRAIN"], "('_learn_mine',)")
            self.assertEqual(pairs["DATASETS.TEST"], "('_learn_mine_val',)")
            self.assertEqual(pairs["SEED"], "3")
            for key in class_keys[model]:
                self.assertEqual(pairs[key], "2", f"{model}: {key}")
            # The command line of the run: train_net.py's own parser reads it back.
            command = learning.train_net_command(config_file, opts, output_dir, datasets)
            args = train_net.get_parser().parse_args(command[2:])
            self.assertEqual(args.dataset, datasets)
            self.assertEqual(args.opts, opts + ["OUTPUT_DIR", output_dir])

    def test_fit_sizes_for_the_one_stage_models_only(self):
        runs = []

        def record(config_file, opts, output_dir, log_file, threads, datasets=()):
            runs.append((config_file, opts))
            return _fake_train_net(config_file, opts, output_dir, log_file, threads, datasets)

        argv = ["--output", self.out, "--iters", "20", "--fit-sizes", *self._dataset_argv()]
        with mock.patch.object(learning, "run_train_net", record):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                self.assertEqual(learning.main(argv), 0)
        self.assertIn("sizes fitted to the data", printed.getvalue())
        for config_file, opts in runs:
            model = next(m for m, c in learning.MODEL_CONFIGS.items() if c == config_file)
            fitted = dict(zip(opts[::2], opts[1::2])).get("MODEL.FIT_SIZES_TO_DATA")
            self.assertEqual(fitted, None if model == "mask_rcnn" else "True", model)

    def test_errors_before_training(self):
        d = self.out
        missing = os.path.join(self.tmp, "missing.json")
        for argv, message in (
            (["--dataset", "_learn_mine", self.json, self.images],
             "--dataset _learn_mine: neither --train-dataset nor --test-dataset names it"),
            (["--train-dataset", "_learn_nowhere"],
             "--train-dataset/--test-dataset _learn_nowhere: not a registered dataset"),
            (["--dataset", "_learn_mine", missing, self.images, "--train-dataset", "_learn_mine"],
             f"--dataset _learn_mine {missing} {self.images}: COCO annotations not found"),
            (["--dataset", "_learn_mine", self.json, self.images, "--train-dataset", "_learn_mine",
              "--test-dataset", "shapes_val"],
             "the datasets chosen have different class counts: _learn_mine 2, shapes_val 6"),
            (["--dataset", "_learn_mine", self.json],
             "argument --dataset: expected NAME (a registered dataset) or NAME JSON IMAGE_DIR"),
        ):  # fmt: skip
            err = io.StringIO()
            must_not_train = mock.Mock(side_effect=AssertionError("trained"))
            with self.subTest(argv=argv), contextlib.redirect_stderr(err):
                with mock.patch.object(learning, "run_train_net", must_not_train):
                    with self.assertRaises(SystemExit):
                        learning.main(["--output", d, *argv])
                self.assertIn(message, err.getvalue())
            self._unregister()

    def test_a_real_run(self):
        """TensorMask trained for 10 iterations by train_net.py on the crafted dataset, then
        evaluated on it: the row has the dataset's COCO results."""
        argv = ["--output", self.out, "--iters", "10", "--batch", "2", "--models", "tensormask"]
        argv += self._dataset_argv() + [
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
            "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.TENSOR_MASK.SCORE_THRESH_TEST", "0.0",
        ]  # fmt: skip
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(learning.main(argv), 0)
        row = next(line for line in out.getvalue().splitlines() if line.startswith("tensormask"))
        self.assertEqual(row.split()[:3], ["tensormask", "0", "10"])
        with open(os.path.join(self.out, "tensormask", "config.yaml")) as f:
            saved = f.read()
        self.assertIn("- _learn_mine_val", saved)
        self.assertIn("NUM_CLASSES: 2", saved)


if __name__ == "__main__":
    unittest.main()
