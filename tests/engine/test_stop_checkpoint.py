"""CheckpointOnStop, with a one-layer model and detectron2's SimpleTrainer (fast): an error before
iteration k's optimizer step saves iteration k-1, exactly the state an uninterrupted run had
then; an error once the step began, or before any iteration finished, saves nothing; each says
so, with the --resume command, in the log and in a note of the error; a finished run, or a
process that does not save, says nothing. resume_command puts --resume before the overrides."""

import os
import shutil
import tempfile
import unittest
from unittest import mock

import torch
from detectron2.engine import SimpleTrainer, hooks
from torch import nn

from tensormask_proj.engine import AtomicDetectionCheckpointer, CheckpointOnStop, resume_command

LOGGER = "tensormask_proj.engine.stop_checkpoint"


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, batch):
        return {"loss": (self.linear(batch) ** 2).mean()}


def _batches(fail_at=None):
    for i in range(100):
        if i == fail_at:
            raise OSError("the share went away")
        yield torch.full((4, 2), float(i + 1))


class TestCheckpointOnStop(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test_stop_checkpoint_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def _trainer(self, fail_at=None, save_to_disk=True):
        torch.manual_seed(0)
        model = _Model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        trainer = SimpleTrainer(model, _batches(fail_at), optimizer)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
        checkpointer = AtomicDetectionCheckpointer(
            model, self.dir, save_to_disk=save_to_disk, optimizer=optimizer, trainer=trainer
        )
        stop = CheckpointOnStop(checkpointer, optimizer)
        trainer.register_hooks([stop, hooks.LRScheduler(optimizer, scheduler)])
        return trainer, checkpointer

    def _train(self, trainer, max_iter=6):
        with mock.patch("sys.argv", ["train_net.py", "--config-file", "c.yaml", "SEED", "0"]):
            trainer.train(0, max_iter)

    def test_error_before_the_step_saves_the_last_finished_iteration(self):
        expected, _ = self._trainer()
        self._train(expected, max_iter=3)  # iterations 0..2, uninterrupted
        trainer, checkpointer = self._trainer(fail_at=3)
        with self.assertLogs(LOGGER, "ERROR") as logs, self.assertRaises(OSError) as raised:
            self._train(trainer)
        saved = os.path.join(self.dir, "model_0000002.pth")
        (note,) = raised.exception.__notes__
        self.assertEqual(logs.output[0].split(":", 2)[2], note)
        stopped = "Training stopped at iteration 3 (OSError). The state after iteration 2"
        self.assertIn(f"{stopped} (the last finished one) is saved in {saved}.", note)
        resume = "python train_net.py --resume --config-file c.yaml SEED 0"
        self.assertIn(f"Resume with: {resume}", note)
        checkpoint = torch.load(saved, weights_only=False)
        self.assertEqual((checkpoint["iteration"], checkpoint["trainer"]["iteration"]), (2, 2))
        self.assertEqual(trainer.iter, 3)  # put back for the other hooks
        for name, value in expected.model.state_dict().items():
            torch.testing.assert_close(checkpoint["model"][name], value, rtol=0, atol=0)
        self.assertEqual(
            checkpoint["optimizer"]["state"][0]["momentum_buffer"].tolist(),
            expected.optimizer.state_dict()["state"][0]["momentum_buffer"].tolist(),
        )

    def test_error_once_the_step_began_saves_nothing(self):
        trainer, _ = self._trainer()

        def fail_after_step_2(optimizer, args, kwargs):  # the weights of iteration 2 are updated
            if trainer.iter == 2:
                raise RuntimeError("out of memory")

        trainer.optimizer.register_step_post_hook(fail_after_step_2)
        with self.assertLogs(LOGGER, "ERROR") as logs, self.assertRaises(RuntimeError):
            self._train(trainer)
        self.assertIn("failed after the optimizer step of iteration 2 began", logs.output[0])
        self.assertIn("nothing was saved; the last checkpoint is none", logs.output[0])
        self.assertEqual(os.listdir(self.dir), [])

    def test_error_at_the_first_iteration_saves_nothing(self):
        trainer, _ = self._trainer(fail_at=0)
        with self.assertLogs(LOGGER, "ERROR") as logs, self.assertRaises(OSError):
            self._train(trainer)
        nothing = "No iteration finished in this run; the last checkpoint is none"
        self.assertIn(nothing, logs.output[0])
        self.assertEqual(os.listdir(self.dir), [])

    def test_ctrl_c_saves_too(self):
        trainer, _ = self._trainer()

        class Interrupt(hooks.HookBase):
            def before_step(self):
                if self.trainer.iter == 4:
                    raise KeyboardInterrupt

        trainer.register_hooks([Interrupt()])
        with self.assertLogs(LOGGER, "ERROR"), self.assertRaises(KeyboardInterrupt):
            self._train(trainer)
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "model_0000003.pth")))

    def test_finished_run_and_other_processes_say_nothing(self):
        trainer, _ = self._trainer()
        with self.assertNoLogs(LOGGER, "ERROR"):
            self._train(trainer)
        trainer, _ = self._trainer(fail_at=3, save_to_disk=False)
        with self.assertNoLogs(LOGGER, "ERROR"), self.assertRaises(OSError) as raised:
            self._train(trainer)
        self.assertFalse(hasattr(raised.exception, "__notes__"))
        self.assertEqual(os.listdir(self.dir), [])


class TestResumeCommand(unittest.TestCase):
    def test_resume_goes_before_the_config_overrides(self):
        argv = ["train_net.py", "--config-file", "c.yaml", "OUTPUT_DIR", "out dir"]
        self.assertEqual(
            resume_command(argv),
            "python train_net.py --resume --config-file c.yaml OUTPUT_DIR 'out dir'",
        )
        self.assertEqual(resume_command(argv[:1] + ["--resume"] + argv[1:]), resume_command(argv))
        self.assertIn("with --resume", resume_command(["/usr/bin/pytest", "-x"]))


if __name__ == "__main__":
    unittest.main()
