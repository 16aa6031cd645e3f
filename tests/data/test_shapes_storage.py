"""
The shapes dataset on disk: deterministic generation, atomic commit, errors that name files.

Every test uses its own temporary datasets root and a few images, so nothing here touches
``$DETECTRON2_DATASETS``.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

from tensormask_proj.data.datasets import shapes as shapes_storage
from tensormask_proj.data.datasets.shapes import (
    ShapesDatasetError,
    ShapesSplit,
    check_split,
    prepare_split,
    shapes_paths,
)

_SPLIT = ShapesSplit(dirname="mini", num_images=6, seed=7)


def _digest(paths):
    """sha256 of the json and of every image file, by file name."""
    out = {}
    with open(paths.json_file, "rb") as f:
        out["json"] = hashlib.sha256(f.read()).hexdigest()
    for name in sorted(os.listdir(paths.image_root)):
        with open(os.path.join(paths.image_root, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _package_paths():
    """(name, directory) of the packages above tensormask_proj.data.datasets.shapes."""
    directory = os.path.dirname(os.path.abspath(shapes_storage.__file__))
    names = ["tensormask_proj.data.datasets", "tensormask_proj.data", "tensormask_proj"]
    out = []
    for name in names:
        out.append((name, directory))
        directory = os.path.dirname(directory)
    return out[::-1]


class _TmpRootTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()


class TestDeterminism(_TmpRootTest):
    def test_same_seed_is_byte_identical_and_other_seed_differs(self):
        a = _digest(prepare_split(_SPLIT, os.path.join(self.root, "a"), progress=False))
        b = _digest(prepare_split(_SPLIT, os.path.join(self.root, "b"), progress=False))
        self.assertEqual(len(a), 1 + _SPLIT.num_images)
        self.assertEqual(a, b)

        other = ShapesSplit(dirname="mini", num_images=6, seed=8)
        c = _digest(prepare_split(other, os.path.join(self.root, "c"), progress=False))
        self.assertNotEqual(a["json"], c["json"])
        # Every image differs, not just one: the seed reaches every image.
        for name in a:
            self.assertNotEqual(a[name], c[name], name)

    def test_image_depends_only_on_seed_and_index(self):
        # The first 3 images of a 3-image split are those of the 6-image split with the same seed.
        small = ShapesSplit(dirname="mini", num_images=3, seed=_SPLIT.seed)
        a = _digest(prepare_split(_SPLIT, os.path.join(self.root, "a"), progress=False))
        b = _digest(prepare_split(small, os.path.join(self.root, "b"), progress=False))
        for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
            self.assertEqual(a[name], b[name])

    def test_prepare_is_idempotent(self):
        paths = prepare_split(_SPLIT, self.root, progress=False)
        mtime = os.path.getmtime(paths.json_file)
        with mock.patch.object(shapes_storage, "generate_split") as generate:
            self.assertEqual(prepare_split(_SPLIT, self.root, progress=False), paths)
            generate.assert_not_called()
        self.assertEqual(os.path.getmtime(paths.json_file), mtime)


class TestInterruptedGeneration(_TmpRootTest):
    def _reference(self):
        return _digest(prepare_split(_SPLIT, os.path.join(self.root, "ref"), progress=False))

    def test_interrupt_leaves_nothing_that_looks_complete(self):
        real = shapes_storage.generate_image
        calls = []

        def interrupt_at_third_image(seed, index, style):
            calls.append(index)
            if len(calls) == 3:
                raise KeyboardInterrupt  # what Ctrl-C raises in the middle of generation
            return real(seed, index, style)

        paths = shapes_paths(_SPLIT, self.root)
        with mock.patch.object(shapes_storage, "generate_image", interrupt_at_third_image):
            with self.assertRaises(KeyboardInterrupt):
                prepare_split(_SPLIT, self.root, progress=False)
        self.assertFalse(os.path.exists(paths.json_file))
        self.assertFalse(os.path.exists(paths.image_root))
        self.assertFalse(check_split(_SPLIT, paths))
        leftovers = [n for n in os.listdir(os.path.join(self.root, "shapes")) if "tmp" in n]
        self.assertEqual(leftovers, [])

        # Next use regenerates the whole split, identical to an uninterrupted generation.
        prepare_split(_SPLIT, self.root, progress=False)
        self.assertEqual(_digest(paths), self._reference())

    def test_killed_generation_is_redone(self):
        """A generation killed with SIGKILL (no cleanup at all) is not used, but redone."""
        split = ShapesSplit(dirname="mini", num_images=24, seed=7)
        paths = shapes_paths(split, self.root)
        # The child imports only the generator: empty parent packages stand in for the real
        # ones, whose __init__ would import torch and detectron2 (seconds) for nothing.
        code = (
            "import sys, types\n"
            "for name, path in " + repr(_package_paths()) + ":\n"
            "    sys.modules[name] = types.ModuleType(name)\n"
            "    sys.modules[name].__path__ = [path]\n"
            "from tensormask_proj.data.datasets.shapes import ShapesSplit, prepare_split\n"
            f"prepare_split(ShapesSplit('mini', 24, 7), {self.root!r}, progress=False)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
        base = os.path.join(self.root, "shapes")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                tmp = [n for n in os.listdir(base)] if os.path.isdir(base) else []
                written = sum(
                    len(os.listdir(os.path.join(base, n, "mini")))
                    for n in tmp
                    if n.startswith(".tmp-") and os.path.isdir(os.path.join(base, n, "mini"))
                )
                if written >= 2:
                    break
                time.sleep(0.01)
            if proc.poll() is not None:
                self.skipTest("the generation finished before it could be interrupted")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        self.assertFalse(os.path.exists(paths.json_file))
        self.assertFalse(check_split(split, paths))
        self.assertTrue(any(n.startswith(".tmp-mini-") for n in os.listdir(base)))

        prepare_split(split, self.root, progress=False)
        self.assertTrue(check_split(split, paths))
        self.assertFalse(any(n.startswith(".tmp-") for n in os.listdir(base)))
        with open(paths.json_file) as f:
            self.assertEqual(len(json.load(f)["images"]), 24)

    def test_images_without_json_are_replaced(self):
        # State after a crash between moving the images and moving the json.
        paths = shapes_paths(_SPLIT, self.root)
        os.makedirs(paths.image_root)
        with open(os.path.join(paths.image_root, "000001.jpg"), "wb") as f:
            f.write(b"half an image")
        self.assertFalse(check_split(_SPLIT, paths))
        prepare_split(_SPLIT, self.root, progress=False)
        self.assertEqual(_digest(paths), self._reference())


class TestDamagedSplit(_TmpRootTest):
    def setUp(self):
        super().setUp()
        self.paths = prepare_split(_SPLIT, self.root, progress=False)

    def test_missing_image_is_named(self):
        missing = os.path.join(self.paths.image_root, "000004.jpg")
        os.remove(missing)
        with self.assertRaisesRegex(ShapesDatasetError, "000004.jpg") as ctx:
            prepare_split(_SPLIT, self.root, progress=False)
        self.assertIn(missing, str(ctx.exception))

    def test_corrupt_json_is_named(self):
        with open(self.paths.json_file, "r+") as f:
            f.truncate(100)
        with self.assertRaises(ShapesDatasetError) as ctx:
            prepare_split(_SPLIT, self.root, progress=False)
        self.assertIn(self.paths.json_file, str(ctx.exception))
        self.assertIn("corrupt", str(ctx.exception))

    def test_json_of_other_generator_version_is_regenerated(self):
        with open(self.paths.json_file) as f:
            coco = json.load(f)
        coco["info"]["generator_version"] = -1
        with open(self.paths.json_file, "w") as f:
            json.dump(coco, f)
        self.assertFalse(check_split(_SPLIT, self.paths))
        prepare_split(_SPLIT, self.root, progress=False)
        self.assertTrue(check_split(_SPLIT, self.paths))

    def test_force_regenerates_identically(self):
        before = _digest(self.paths)
        prepare_split(_SPLIT, self.root, progress=False, force=True)
        self.assertEqual(_digest(self.paths), before)


if __name__ == "__main__":
    unittest.main()
