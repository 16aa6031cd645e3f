"""
train_net.py end to end, for both meta-architectures, each run in a fresh process through the
script's ``__main__`` (argument parsing, ``launch`` with --num-gpus 1, ``main``), on tiny splits
of the embedded shapes dataset (8 training, 3 evaluation images), with the quick shapes configs
of both models made small by `workflow_opts` (160 px images, batch 2, score threshold 0).

* BlendMask: train 3 iterations, evaluate; then ``--eval-only`` in another process, on a copy of
  the checkpoint in another folder (a checkpoint "moved to another machine"), reproduces the
  final evaluation prediction for prediction, and ``TEST.EXPECTED_RESULTS`` set to the training
  run's APs passes ``verify_results``.
* TensorMask: a run killed with SIGKILL after its first checkpoint resumes with ``--resume`` at
  the saved iteration + 1, with the optimizer, LR schedule and data loader restored, finishes
  MAX_ITER, and ends with the weights of an uninterrupted run of the same SEED, bit for bit;
  ``--eval-only`` of the final checkpoint reproduces its final evaluation, and a wrong
  ``TEST.EXPECTED_RESULTS`` fails the run (exit status 1).

Error cases (setup, corrupt images, NaN loss) are in tests/engine/test_train_net_errors.py.
"""

import glob
import math
import os
import shutil
import signal
import subprocess
import time
import unittest

from engine.workflow_helpers import (
    BLENDMASK_CONFIG,
    REPO_ROOT,
    TENSORMASK_CONFIG,
    TRAIN_NET,
    cfg_opts,
    create_tiny_splits,
    evaluation_records,
    last_checkpoint,
    load_checkpoint,
    load_predictions,
    load_script,
    read_metrics,
    remove_tiny_splits,
    run_train_net,
    subprocess_env,
    tail,
    train_net_command,
    training_records,
    workflow_cfg,
    workflow_opts,
)

_TMP = None
_SPLITS = None


def setUpModule():
    global _TMP, _SPLITS
    _TMP, _SPLITS = create_tiny_splits("test_train_net_")


def tearDownModule():
    remove_tiny_splits(_TMP, _SPLITS)


def _opts(config):
    """The workflow overrides of ``config`` and the tiny datasets."""
    train, val = _SPLITS["train"].name, _SPLITS["val"].name
    datasets = {"DATASETS.TRAIN": f"('{train}',)", "DATASETS.TEST": f"('{val}',)"}
    return workflow_opts(config) + cfg_opts(datasets)


def _assert_same_predictions(test, expected, actual):
    """Two COCOEvaluator prediction lists are the same detections (same model, same inputs)."""
    test.assertGreater(len(expected), 0, "no predictions: the comparison would prove nothing")
    test.assertEqual(len(actual), len(expected))
    key = lambda p: (p["image_id"], -p["score"], p["category_id"])  # noqa: E731
    for e, a in zip(sorted(expected, key=key), sorted(actual, key=key)):
        test.assertEqual((a["image_id"], a["category_id"]), (e["image_id"], e["category_id"]))
        test.assertAlmostEqual(a["score"], e["score"], places=5)
        for x, y in zip(a["bbox"], e["bbox"]):
            test.assertAlmostEqual(x, y, places=2)
        test.assertEqual(a["segmentation"]["counts"], e["segmentation"]["counts"])


class TestBlendMaskTrainEvalOnly(unittest.TestCase):
    MAX_ITER = 3

    @classmethod
    def setUpClass(cls):
        cls.out = os.path.join(_TMP, "blendmask")
        args = ["--config-file", BLENDMASK_CONFIG, "--num-gpus", "1"] + _opts(BLENDMASK_CONFIG)
        args += cfg_opts(
            {"SOLVER.MAX_ITER": cls.MAX_ITER, "SOLVER.CHECKPOINT_PERIOD": 2, "OUTPUT_DIR": cls.out}
        )
        cls.train = run_train_net(args, list(_SPLITS.values()))

    def setUp(self):
        self.assertEqual(self.train.returncode, 0, tail(self.train.stdout))

    def test_training_writes_checkpoints_metrics_events_and_coco_table(self):
        log = self.train.stdout
        self.assertIn("Starting training from iteration 0", log)
        # The COCO table for masks and boxes, and the csv lines of both tasks.
        self.assertIn("Evaluation results for segm", log)
        self.assertIn("Evaluation results for bbox", log)
        self.assertIn("copypaste: Task: segm", log)

        # CHECKPOINT_PERIOD 2: after iteration 1 (the 2nd), then model_final after the last.
        self.assertTrue(os.path.isfile(os.path.join(self.out, "model_0000001.pth")))
        final = os.path.join(self.out, "model_final.pth")
        self.assertEqual(last_checkpoint(self.out), final)
        ckpt = load_checkpoint(final)
        self.assertEqual(ckpt["iteration"], self.MAX_ITER - 1)
        # Everything --resume needs: the optimizer (SGD momentum of every parameter) and the
        # LR scheduler (a hook's state).
        self.assertEqual(sorted(ckpt), ["iteration", "model", "trainer"])
        trainer_state = ckpt["trainer"]
        self.assertEqual(trainer_state["iteration"], self.MAX_ITER - 1)
        self.assertEqual(trainer_state["hooks"]["LRScheduler"]["last_epoch"], self.MAX_ITER)
        optimizer = trainer_state["_trainer"]["optimizer"]
        num_params = sum(len(group["params"]) for group in optimizer["param_groups"])
        self.assertGreater(len(optimizer["state"]), num_params // 2)
        for state in optimizer["state"].values():
            self.assertGreater(float(state["momentum_buffer"].abs().sum()), 0.0)
        self.assertEqual(glob.glob(os.path.join(self.out, ".*.tmp")), [])

        records = read_metrics(self.out)
        last_train = training_records(records)[-1]
        self.assertEqual(last_train["iteration"], self.MAX_ITER - 1)
        for key in ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"):
            self.assertTrue(math.isfinite(last_train[key]), key)
        evaluation = evaluation_records(records)
        self.assertEqual(len(evaluation), 1)
        self.assertIn("bbox/AP", evaluation[0])

        png = os.path.join(self.out, "metrics.png")
        self.assertIn(f"Loss/AP plot: {png}", log)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual(len(glob.glob(os.path.join(self.out, "events.out.tfevents.*"))), 1)

    def test_eval_only_on_another_machine_reproduces_final_evaluation(self):
        # "Another machine": a fresh process, the checkpoint copied elsewhere, same config.
        moved = os.path.join(_TMP, "blendmask_elsewhere", "model.pth")
        os.makedirs(os.path.dirname(moved))
        shutil.copy(os.path.join(self.out, "model_final.pth"), moved)
        trained = evaluation_records(read_metrics(self.out))[-1]
        expected = [
            ["segm", "AP", trained["segm/AP"], 1e-6],
            ["bbox", "AP", trained["bbox/AP"], 1e-6],
            ["segm", "AP50", trained["segm/AP50"], 1e-6],
        ]
        out = os.path.join(_TMP, "blendmask_eval")
        args = ["--config-file", BLENDMASK_CONFIG, "--eval-only"] + _opts(BLENDMASK_CONFIG)
        args += cfg_opts(
            {"MODEL.WEIGHTS": moved, "OUTPUT_DIR": out, "TEST.EXPECTED_RESULTS": repr(expected)}
        )
        run = run_train_net(args, list(_SPLITS.values()))
        # Exit status 0: verify_results accepted the training run's APs.
        self.assertEqual(run.returncode, 0, tail(run.stdout))
        self.assertIn(f"Loading from {moved}", run.stdout)
        self.assertIn("copypaste: Task: segm", run.stdout)
        _assert_same_predictions(self, load_predictions(self.out), load_predictions(out))


class TestTensorMaskKillResume(unittest.TestCase):
    MAX_ITER = 8

    @classmethod
    def setUpClass(cls):
        cls.out = os.path.join(_TMP, "tensormask")
        cls.args = ["--config-file", TENSORMASK_CONFIG] + _opts(TENSORMASK_CONFIG)
        run = {"SOLVER.MAX_ITER": cls.MAX_ITER, "SOLVER.CHECKPOINT_PERIOD": 2, "SEED": 0}
        cls.args += cfg_opts({**run, "OUTPUT_DIR": cls.out})
        cls.killed_log, cls.killed_returncode = cls._run_and_kill_after_first_checkpoint()
        cls.saved = last_checkpoint(cls.out)
        cls.saved_iteration = load_checkpoint(cls.saved)["iteration"]
        cls.final_existed_after_kill = os.path.exists(os.path.join(cls.out, "model_final.pth"))
        cls.resumed = run_train_net(["--resume"] + cls.args, list(_SPLITS.values()))
        # The same command, never interrupted (evaluation, which changes no weight, left out).
        cls.uninterrupted_out = os.path.join(_TMP, "tensormask_uninterrupted")
        opts = {"OUTPUT_DIR": cls.uninterrupted_out, "DATASETS.TEST": "()"}
        cls.uninterrupted = run_train_net(cls.args + cfg_opts(opts), list(_SPLITS.values()))

    @classmethod
    def _run_and_kill_after_first_checkpoint(cls):
        log_path = os.path.join(_TMP, "tensormask_killed.log")
        tag = os.path.join(cls.out, "last_checkpoint")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                train_net_command(cls.args, list(_SPLITS.values())),
                cwd=REPO_ROOT,
                env=subprocess_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 300
            try:
                while not os.path.exists(tag) and proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no checkpoint within 300 s")
                    time.sleep(0.05)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up or save
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        with open(log_path) as f:
            return f.read(), proc.returncode

    def test_killed_mid_run(self):
        self.assertEqual(self.killed_returncode, -signal.SIGKILL, tail(self.killed_log))
        self.assertFalse(self.final_existed_after_kill)
        self.assertLess(self.saved_iteration, self.MAX_ITER - 1)
        # CHECKPOINT_PERIOD 2: checkpoints are written after iterations 1, 3, 5.
        self.assertEqual(self.saved_iteration % 2, 1)
        self.assertTrue(self.saved.endswith(f"model_{self.saved_iteration:07d}.pth"))

    def test_resume_continues_at_saved_iteration_and_finishes(self):
        log = self.resumed.stdout
        self.assertEqual(self.resumed.returncode, 0, tail(log))
        self.assertIn(f"Loading from {self.saved}", log)
        self.assertIn(f"Starting training from iteration {self.saved_iteration + 1}", log)
        self.assertNotIn("Starting training from iteration 0", log)
        final = load_checkpoint(os.path.join(self.out, "model_final.pth"))
        self.assertEqual(final["iteration"], self.MAX_ITER - 1)
        self.assertEqual(last_checkpoint(self.out), os.path.join(self.out, "model_final.pth"))
        self.assertIn("copypaste: Task: segm", log)

    def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(self):
        import torch

        self.assertEqual(self.resumed.returncode, 0, tail(self.resumed.stdout))
        self.assertEqual(self.uninterrupted.returncode, 0, tail(self.uninterrupted.stdout))
        self.assertIn(
            f"Data loader state restored: seed 0, continuing at batch {self.saved_iteration + 1}",
            self.resumed.stdout,
        )
        expected = load_checkpoint(os.path.join(self.uninterrupted_out, "model_final.pth"))
        resumed = load_checkpoint(os.path.join(self.out, "model_final.pth"))
        self.assertEqual(sorted(resumed["model"]), sorted(expected["model"]))
        differing = [
            k for k, v in expected["model"].items() if not torch.equal(v, resumed["model"][k])
        ]
        self.assertEqual(differing, [], "tensors that differ from the uninterrupted run's")

    def test_resume_restores_the_lr_schedule(self):
        # The lr logged at the last iteration is the one after MAX_ITER - 1 scheduler steps
        # (all in linear warmup here, so a schedule restarted at the resume point would differ).
        import torch
        from detectron2.solver import build_lr_scheduler

        self.assertEqual(self.resumed.returncode, 0, tail(self.resumed.stdout))
        cfg = workflow_cfg(TENSORMASK_CONFIG, "SOLVER.MAX_ITER", str(self.MAX_ITER))
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
        scheduler = build_lr_scheduler(cfg, optimizer)
        for _ in range(self.MAX_ITER - 1):
            optimizer.step()
            scheduler.step()
        expected_lr = optimizer.param_groups[0]["lr"]
        last = training_records(read_metrics(self.out))[-1]
        self.assertEqual(last["iteration"], self.MAX_ITER - 1)
        self.assertAlmostEqual(last["lr"], expected_lr, places=9)
        self.assertNotAlmostEqual(last["lr"], cfg.SOLVER.BASE_LR, places=6)

    def test_eval_only_reproduces_final_evaluation_and_wrong_expectation_fails(self):
        self.assertEqual(self.resumed.returncode, 0, tail(self.resumed.stdout))
        trained = evaluation_records(read_metrics(self.out))[-1]
        out = os.path.join(_TMP, "tensormask_eval")
        train_net = load_script(TRAIN_NET, "train_net")
        wrong = [["segm", "AP", trained["segm/AP"] + 5.0, 1.0]]
        opts = {
            "MODEL.WEIGHTS": os.path.join(self.out, "model_final.pth"),
            "OUTPUT_DIR": out,
            "TEST.EXPECTED_RESULTS": repr(wrong),
        }
        argv = ["--config-file", TENSORMASK_CONFIG, "--eval-only"] + _opts(TENSORMASK_CONFIG)
        args = train_net.default_argument_parser().parse_args(argv + cfg_opts(opts))
        with self.assertRaises(SystemExit) as exited:  # detectron2's verify_results
            train_net.main(args)
        self.assertEqual(exited.exception.code, 1)
        _assert_same_predictions(self, load_predictions(self.out), load_predictions(out))


if __name__ == "__main__":
    unittest.main()
