"""atomic_write: all or nothing at the destination, no temporary file left behind; the temporary
file of a writer killed with SIGKILL is removed by remove_stale_temporary_files, and nothing
else is."""

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import unittest
from unittest import mock

from tensormask_proj.utils import atomic_file, atomic_write
from tensormask_proj.utils.atomic_file import remove_stale_temporary_files


class TestAtomicWrite(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name
        self.path = os.path.join(self.dir, "out.bin")

    def tearDown(self):
        self._tmp.cleanup()

    def _read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def test_writes_binary_and_text(self):
        with atomic_write(self.path) as f:
            f.write(b"\x00\x01")
        self.assertEqual(self._read(), b"\x00\x01")
        with atomic_write(self.path, "w") as f:
            f.write("text")
        self.assertEqual(self._read(), b"text")
        self.assertEqual(os.listdir(self.dir), ["out.bin"])

    def test_destination_absent_until_the_block_ends(self):
        with atomic_write(self.path) as f:
            f.write(b"partial")
            self.assertFalse(os.path.exists(self.path))
        self.assertEqual(self._read(), b"partial")

    def test_error_in_block_keeps_the_previous_file(self):
        with open(self.path, "wb") as f:
            f.write(b"old")
        with self.assertRaisesRegex(RuntimeError, "disk full"):
            with atomic_write(self.path) as f:
                f.write(b"new, half")
                raise RuntimeError("disk full")
        self.assertEqual(self._read(), b"old")
        self.assertEqual(os.listdir(self.dir), ["out.bin"])

    def test_failed_rename_leaves_nothing(self):
        with mock.patch("os.replace", side_effect=OSError("killed")):
            with self.assertRaises(OSError):
                with atomic_write(self.path) as f:
                    f.write(b"x")
        self.assertEqual(os.listdir(self.dir), [])

    def test_interleaved_writers_each_complete(self):
        # Two writers of the same path (two ranks): distinct temporary files, the last rename wins.
        with atomic_write(self.path) as first:
            with atomic_write(self.path) as second:
                first.write(b"first")
                second.write(b"second")
            self.assertEqual(self._read(), b"second")
        self.assertEqual(self._read(), b"first")
        self.assertEqual(os.listdir(self.dir), ["out.bin"])

    def test_permissions_follow_the_umask(self):
        with atomic_write(self.path) as f:
            f.write(b"x")
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o666 & ~umask)

    def test_bad_mode_and_missing_folder(self):
        with self.assertRaisesRegex(ValueError, "mode must be 'w' or 'wb', got 'a'.*out.bin"):
            with atomic_write(self.path, "a"):
                pass
        missing = os.path.join(self.dir, "no_such_folder", "out.bin")
        with self.assertRaisesRegex(FileNotFoundError, "no_such_folder"):
            with atomic_write(missing):
                pass


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(proc.stdout)


class TestRemoveStaleTemporaryFiles(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def _touch(self, name, size=3):
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(b"x" * size)

    def test_file_of_a_writer_killed_with_sigkill(self):
        # A process writing a checkpoint-sized file through atomic_write, killed in the middle.
        # (The module is run from its file: no need to import detectron2 in the child.)
        code = textwrap.dedent(f"""
            import os, runpy, signal
            atomic_write = runpy.run_path({atomic_file.__file__!r})["atomic_write"]
            with atomic_write(os.path.join({self.dir!r}, "model_0000009.pth")) as f:
                f.write(b"half a checkpoint" * 1000)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            """)
        proc = subprocess.run([sys.executable, "-c", code])
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        (left,) = os.listdir(self.dir)
        self.assertRegex(left, r"^\.model_0000009\.pth\.\d+\.[0-9a-f]{8}\.tmp$")
        self.assertEqual(remove_stale_temporary_files(self.dir), [os.path.join(self.dir, left)])
        self.assertEqual(os.listdir(self.dir), [])

    def test_only_stale_files_of_the_writer_pattern(self):
        dead, alive = _dead_pid(), os.getppid()
        stale = [f".model_0000009.pth.{dead}.0a1b2c3d.tmp", f".last_checkpoint.{dead}.12345678.tmp"]
        stale.append(f".model_final.pth.{dead}.tmp")  # the name of older versions
        kept = [
            f".model_0000019.pth.{alive}.0a1b2c3d.tmp",  # a running writer's
            f".model_0000029.pth.{os.getpid()}.0a1b2c3d.tmp",  # this process's
            ".hidden.tmp",
            f"model_0000009.pth.{dead}.tmp",  # not hidden
            ".config.yaml.swp",
            "model_0000009.pth",
            "last_checkpoint",
        ]
        for name in stale + kept:
            self._touch(name)
        os.mkdir(os.path.join(self.dir, f".folder.{dead}.tmp"))
        removed = remove_stale_temporary_files(self.dir)
        self.assertEqual(sorted(removed), sorted(os.path.join(self.dir, n) for n in stale))
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(kept + [f".folder.{dead}.tmp"]))

    def test_missing_folder(self):
        self.assertEqual(remove_stale_temporary_files(os.path.join(self.dir, "nothing")), [])


if __name__ == "__main__":
    unittest.main()
