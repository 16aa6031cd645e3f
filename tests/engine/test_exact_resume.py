"""
``--resume`` continues exactly: train_net's Trainer, in process, on a tiny shapes split (TensorMask,
SEED 0, 4 iterations, a checkpoint every 2), with a model that also draws random numbers while
training (its losses are scaled by a torch.rand draw, as dropout would), so that the model-side
random stream is tested too.

* A: uninterrupted, 4 iterations.
* B: the same, stopped by an error at iteration 3: it saves the last finished iteration (2)
  first, and the error's note names it and the --resume command.
* C: a job killed after the periodic checkpoint of iteration 1 (B's folder without the
  iteration-2 file), resumed with 2 DataLoader workers.
* D: B resumed from its iteration-2 checkpoint.

C's and D's final weights equal A's bit for bit (CPU float32), and so do their losses of every
iteration. A checkpoint written before the data loader state was recorded still resumes, with a
warning that the data order restarts.
"""

import os
import shutil
import tempfile
import unittest

import torch
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from .workflow_helpers import (
    TRAIN_NET,
    TinySplit,
    last_checkpoint,
    load_checkpoint,
    load_script,
    register_in_process,
    tiny_training_cfg,
    unregister_in_process,
)

train_net = load_script(TRAIN_NET, "train_net")

MAX_ITER = 4


class _Losses(HookBase):
    """Records the total loss of every iteration; raises ``error`` before ``fail_at``."""

    def __init__(self, fail_at=None, error=None):
        self.losses = {}
        self.fail_at, self.error = fail_at, error

    def before_step(self):
        if self.trainer.iter == self.fail_at:
            raise self.error

    def after_step(self):
        self.losses[self.trainer.iter] = self.trainer.storage.history("total_loss").latest()


def _with_random_losses(trainer):
    """Make the model draw from torch's global generator while training (like dropout)."""
    model = trainer._trainer.model
    forward = model.forward

    def forward_drawing(batched_inputs):
        losses = forward(batched_inputs)
        return {k: v * (1.0 + 0.1 * torch.rand(())) for k, v in losses.items()}

    model.forward = forward_drawing


class TestExactResume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_exact_resume_")
        cls.split = TinySplit("_test_resume_train6", 6, 11, os.path.join(cls.tmp, "datasets"))
        register_in_process(cls.split)

        cls.a, cls.a_losses = cls._train("a")
        cls.b, cls.b_losses = cls._train("b", fail_at=3, error=RuntimeError("the share went away"))
        cls.b_files = sorted(os.listdir(cls.b.cfg.OUTPUT_DIR))
        # C: what a job killed after checkpoint 1 leaves (no iteration-2 checkpoint yet).
        c = os.path.join(cls.tmp, "c")
        shutil.copytree(cls.b.cfg.OUTPUT_DIR, c)
        os.remove(os.path.join(c, "model_0000002.pth"))
        with open(os.path.join(c, "last_checkpoint"), "w") as f:
            f.write("model_0000001.pth")
        cls.c, cls.c_losses = cls._train("c", "DATALOADER.NUM_WORKERS", "2", resume=True)
        cls.d, cls.d_losses = cls._train("b", resume=True)

    @classmethod
    def tearDownClass(cls):
        unregister_in_process(cls.split)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _cfg(cls, out, *opts):
        return tiny_training_cfg(cls.split, os.path.join(cls.tmp, out), MAX_ITER, 2, *opts)

    @classmethod
    def _train(cls, out, *opts, resume=False, fail_at=None, error=None):
        """Build train_net's Trainer as main() does (seeded as default_setup seeds) and train;
        returns the trainer and its losses."""
        cfg = cls._cfg(out, *opts)
        seed_all_rng(cfg.SEED)
        trainer = train_net.Trainer(cfg)
        trainer.resume_or_load(resume=resume)
        _with_random_losses(trainer)
        recorder = _Losses(fail_at, error)
        trainer.register_hooks([recorder])
        try:
            trainer.train()
        except RuntimeError as e:
            trainer.error = e
        return trainer, recorder.losses

    def _final_weights(self, trainer):
        path = os.path.join(trainer.cfg.OUTPUT_DIR, "model_final.pth")
        return load_checkpoint(path)["model"]

    def assertSameWeights(self, expected, actual):
        self.assertEqual(sorted(actual), sorted(expected))
        different = [k for k in expected if not torch.equal(expected[k], actual[k])]
        self.assertEqual(different, [], "tensors that differ from the uninterrupted run's")

    def test_error_saves_last_finished_iteration_and_names_resume_command(self):
        error = self.b.error
        saved = os.path.join(self.b.cfg.OUTPUT_DIR, "model_0000002.pth")
        (note,) = error.__notes__
        self.assertIn("Training stopped at iteration 3 (RuntimeError)", note)
        saved_text = f"The state after iteration 2 (the last finished one) is saved in {saved}"
        self.assertIn(saved_text, note)
        self.assertIn("Resume with: ", note)
        self.assertIn("--resume", note)
        checkpoint = load_checkpoint(saved)
        self.assertEqual(checkpoint["iteration"], 2)
        trainer_state = checkpoint["trainer"]
        self.assertEqual(trainer_state["iteration"], 2)
        self.assertEqual(trainer_state["hooks"]["LRScheduler"]["last_epoch"], 3)
        self.assertEqual(trainer_state["data_loader"]["batches"], 3)
        self.assertEqual(trainer_state["data_loader"]["seed"], 0)
        checkpoints = [f for f in self.b_files if f.endswith(".pth")]
        self.assertEqual(checkpoints, ["model_0000001.pth", "model_0000002.pth"])
        self.assertEqual(list(self.b_losses), [0, 1, 2], "iteration 3 must not have run")

    def test_killed_job_resumed_with_workers_ends_with_the_same_weights(self):
        self.assertEqual(self.c.start_iter, 2)
        self.assertSameWeights(self._final_weights(self.a), self._final_weights(self.c))
        self.assertEqual(self.c_losses, {k: self.a_losses[k] for k in (2, 3)})

    def test_resume_after_error_ends_with_the_same_weights(self):
        self.assertEqual(self.d.start_iter, 3)
        self.assertSameWeights(self._final_weights(self.a), self._final_weights(self.d))
        self.assertEqual(self.d_losses, {3: self.a_losses[3]})
        self.assertEqual(self.b_losses, {k: self.a_losses[k] for k in (0, 1, 2)})
        final = os.path.join(self.b.cfg.OUTPUT_DIR, "model_final.pth")
        self.assertEqual(last_checkpoint(self.b.cfg.OUTPUT_DIR), final)

    def test_checkpoint_without_data_loader_state_resumes_with_a_warning(self):
        out = os.path.join(self.tmp, "old")
        os.makedirs(out)
        checkpoint = load_checkpoint(os.path.join(self.b.cfg.OUTPUT_DIR, "model_0000001.pth"))
        del checkpoint["trainer"]["data_loader"]  # as written before this state existed
        torch.save(checkpoint, os.path.join(out, "model_0000001.pth"))
        with open(os.path.join(out, "last_checkpoint"), "w") as f:
            f.write("model_0000001.pth")
        cfg = self._cfg("old", "SOLVER.MAX_ITER", "3")
        trainer = train_net.Trainer(cfg)
        with self.assertLogs("tensormask_proj.engine.trainer", "WARNING") as logs:
            trainer.resume_or_load(resume=True)
        self.assertIn("records no data loader state", logs.output[0])
        self.assertIn("the data order and augmentations restart", logs.output[0])
        self.assertIn("does not continue the interrupted one exactly", logs.output[0])
        self.assertEqual(trainer.start_iter, 2)
        trainer.train()
        final = load_checkpoint(os.path.join(out, "model_final.pth"))
        self.assertEqual(final["iteration"], 2)
        # Its own checkpoints record the loader: a later --resume of this run is exact.
        self.assertEqual(final["trainer"]["data_loader"]["batches"], 3)


if __name__ == "__main__":
    unittest.main()
