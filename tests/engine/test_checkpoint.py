"""
AtomicDetectionCheckpointer: a checkpoint and its ``last_checkpoint`` tag are complete or
absent, never half-written; a frozen checkpointer or a model with non-finite weights saves
nothing and leaves the previous checkpoint tagged; a damaged file is named when loading.
"""
import os
import shutil
import tempfile
import unittest
from unittest import mock

import torch
from torch import nn

from tensormask_proj.engine import AtomicDetectionCheckpointer, non_finite_tensors


class _TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.register_buffer("steps", torch.tensor(7))  # an integer buffer: never "non-finite"


class TestAtomicDetectionCheckpointer(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test_checkpoint_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        torch.manual_seed(0)
        self.model = _TinyModel()
        self.checkpointer = AtomicDetectionCheckpointer(self.model, self.dir)

    def _listing(self):
        return sorted(os.listdir(self.dir))

    def _tag(self):
        with open(os.path.join(self.dir, "last_checkpoint")) as f:
            return f.read()

    def test_save_then_load_in_a_fresh_model(self):
        self.checkpointer.save("model_0000009", iteration=9)
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000009.pth"])
        self.assertEqual(self._tag(), "model_0000009.pth")

        other = _TinyModel()  # different random init
        self.assertFalse(torch.equal(other.conv.weight, self.model.conv.weight))
        extra = AtomicDetectionCheckpointer(other, self.dir).resume_or_load("", resume=True)
        self.assertEqual(extra["iteration"], 9)
        for name, value in self.model.state_dict().items():
            torch.testing.assert_close(other.state_dict()[name], value, rtol=0, atol=0)

    def test_failure_while_writing_leaves_previous_checkpoint(self):
        self.checkpointer.save("model_0000001")

        def write_half_then_fail(obj, f):
            f.write(b"PK\x03\x04 half a zip")
            raise OSError("No space left on device")

        with mock.patch("torch.save", side_effect=write_half_then_fail):
            with self.assertRaisesRegex(OSError, "No space left"):
                self.checkpointer.save("model_0000003")
        # No model_0000003.pth, not even truncated, no temporary file; the tag is unchanged.
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])
        self.assertEqual(self._tag(), "model_0000001.pth")

    def test_failure_while_tagging_keeps_old_tag(self):
        self.checkpointer.save("model_0000001")
        real_replace = os.replace

        def replace(src, dst):
            if dst.endswith("last_checkpoint"):
                raise OSError("killed")
            return real_replace(src, dst)

        with mock.patch("os.replace", side_effect=replace):
            with self.assertRaises(OSError):
                self.checkpointer.save("model_0000003")
        # The new file is complete, but the tag still names the old one, which is complete.
        self.assertEqual(self._tag(), "model_0000001.pth")
        self.assertNotIn(".last_checkpoint.tmp", self._listing())

    def test_frozen_saves_nothing(self):
        self.checkpointer.save("model_0000001")
        self.checkpointer.frozen = True
        self.checkpointer.save("model_final")
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])

    def test_non_finite_weights_are_not_saved(self):
        self.checkpointer.save("model_0000001")
        with torch.no_grad():
            self.model.norm.bias[1] = float("nan")
            self.model.conv.weight[0, 0, 0, 0] = float("inf")
        self.assertEqual(non_finite_tensors(self.model.state_dict()), ["conv.weight", "norm.bias"])
        with self.assertLogs(self.checkpointer.logger, "ERROR") as logs:
            self.checkpointer.save("model_0000003")
        self.assertIn("conv.weight, norm.bias", logs.output[0])
        self.assertIn("model_0000001.pth", logs.output[0])
        self.assertTrue(self.checkpointer.frozen)
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])
        self.assertEqual(self._tag(), "model_0000001.pth")

    def test_damaged_file_is_named(self):
        path = os.path.join(self.dir, "model_final.pth")
        self.checkpointer.save("model_final")
        with open(path, "r+b") as f:
            f.truncate(100)
        with self.assertRaises(RuntimeError) as raised:
            AtomicDetectionCheckpointer(_TinyModel()).load(path)
        self.assertIn(f"Cannot read checkpoint {path}", str(raised.exception))


if __name__ == "__main__":
    unittest.main()
