"""
AtomicDetectionCheckpointer: a checkpoint and its ``last_checkpoint`` tag are complete or
absent, never half-written; a frozen checkpointer or a model with non-finite weights saves
nothing and leaves the previous checkpoint tagged; a damaged file is named when loading; the
temporary file of a killed save is removed at the next start; a full disk gives one error naming
the output folder and the bytes needed; each save logs its size and time.
"""

import errno
import os
import shutil
import tempfile
import unittest
from unittest import mock

import torch
from torch import nn

from tensormask_proj.engine import (
    AtomicDetectionCheckpointer,
    CheckpointDiskFullError,
    non_finite_tensors,
)


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

    def test_stale_temporary_file_removed_at_next_start(self):
        self.checkpointer.save("model_0000001")
        # What a save killed with SIGKILL leaves (its pid is gone; see tests/utils).
        stale = os.path.join(self.dir, ".model_0000003.pth.999999999.0a1b2c3d.tmp")
        with open(stale, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        with self.assertLogs(self.checkpointer.logger, "INFO") as logs:
            AtomicDetectionCheckpointer(_TinyModel(), self.dir)
        self.assertIn(f"Removed {stale}, left by a checkpoint save that was killed", logs.output[0])
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])
        # Only the process that saves (the main one) cleans up.
        with open(stale, "wb") as f:
            f.write(b"x")
        AtomicDetectionCheckpointer(_TinyModel(), self.dir, save_to_disk=False)
        self.assertTrue(os.path.exists(stale))

    def _assert_disk_full(self, raised, name):
        message = str(raised.exception)
        self.assertIsInstance(raised.exception, OSError)
        self.assertEqual(raised.exception.errno, errno.ENOSPC)
        self.assertIn(f"Cannot save checkpoint {name}", message)
        self.assertIn(f"the output folder {self.dir} is full", message)
        # The weights' bytes (float32) are what the checkpoint needs, about.
        needed = sum(v.numel() * v.element_size() for v in self.model.state_dict().values())
        self.assertRegex(message, r"needs about ([\d,]+) bytes")
        stated = int(message.split("needs about ")[1].split(" bytes")[0].replace(",", ""))
        self.assertGreaterEqual(stated, needed)
        self.assertLess(stated, needed + 1000)
        self.assertIn("bytes free", message)
        self.assertIn("--resume from the last checkpoint", message)
        self.assertIsNone(raised.exception.__cause__)  # one error, not a chain of three
        self.assertTrue(raised.exception.__suppress_context__)

    def test_full_disk_gives_one_error_naming_folder_and_bytes(self):
        self.checkpointer.save("model_0000001")

        def torch_save_on_full_disk(obj, f):
            # What torch.save raises when a write fails with ENOSPC (measured, torch 2.x): the
            # OSError is the context of a RuntimeError of its zip writer.
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

        with mock.patch("torch.save", side_effect=torch_save_on_full_disk):
            with self.assertRaises(CheckpointDiskFullError) as raised:
                self.checkpointer.save("model_0000003")
        self._assert_disk_full(raised, "model_0000003.pth")
        self.assertIn("model_0000001.pth", str(raised.exception))
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])

        # Raw ENOSPC (from the fsync), and a disk that is simply too small for the checkpoint.
        enospc = OSError(errno.ENOSPC, "No space left on device")
        with mock.patch("os.fsync", side_effect=enospc):
            with self.assertRaises(CheckpointDiskFullError) as raised:
                self.checkpointer.save("model_0000005")
        self._assert_disk_full(raised, "model_0000005.pth")
        usage = mock.Mock(free=100)
        with (
            mock.patch("os.fsync", side_effect=OSError(errno.EIO, "I/O error")),
            mock.patch("shutil.disk_usage", return_value=usage),
        ):
            with self.assertRaises(CheckpointDiskFullError) as raised:
                self.checkpointer.save("model_0000007")
        self.assertIn("100 bytes free", str(raised.exception))
        self.assertEqual(self._listing(), ["last_checkpoint", "model_0000001.pth"])

    def test_other_write_errors_are_not_disk_full(self):
        with mock.patch("os.fsync", side_effect=OSError(errno.EIO, "Input/output error")):
            with self.assertRaises(OSError) as raised:
                self.checkpointer.save("model_0000001")
        self.assertNotIsInstance(raised.exception, CheckpointDiskFullError)
        self.assertEqual(raised.exception.errno, errno.EIO)

    def test_each_save_logs_its_size_and_time(self):
        with self.assertLogs(self.checkpointer.logger, "INFO") as logs:
            self.checkpointer.save("model_0000001")
        size = os.path.getsize(os.path.join(self.dir, "model_0000001.pth"))
        self.assertRegex(logs.output[-1], rf"Saved model_0000001.pth: {size / 2**20:.1f} MB in \d")


if __name__ == "__main__":
    unittest.main()
