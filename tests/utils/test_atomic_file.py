"""atomic_write: all or nothing at the destination, no temporary file left behind."""
import os
import stat
import tempfile
import unittest
from unittest import mock

from tensormask_proj.utils import atomic_write


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


if __name__ == "__main__":
    unittest.main()
