"""tools/coco_subset.py: a few images of a COCO dataset, optionally fewer classes, as a dataset
of its own that passes the checks of --dataset."""

import contextlib
import io
import json
import os
import shutil
import tempfile
import unittest

from engine.workflow_helpers import REPO_ROOT, load_script

from tensormask_proj.data.coco_checks import check_coco_dataset

from .coco_fixtures import annotation, coco_json, write_image

coco_subset = load_script(os.path.join(REPO_ROOT, "tools", "coco_subset.py"), "coco_subset")


class TestCocoSubset(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="test_coco_subset_")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        images_dir = os.path.join(self.tmp, "src")
        os.makedirs(images_dir)
        images = [write_image(images_dir, f"{i}.jpg", "rgb") for i in range(4)]
        # Images 1-4, each with a "blob" (category 1) and a "bar" (category 3).
        anns = [annotation(i, category_id=c) for i in range(1, 5) for c in (1, 3)]
        self.json = coco_json(os.path.join(self.tmp, "src.json"), images, anns)
        self.images_dir = images_dir

    def run_tool(self, out, *extra):
        argv = ["--dataset", "src", self.json, self.images_dir, "--output", out]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = coco_subset.main(argv + list(extra))
        return status, stdout.getvalue() + stderr.getvalue()

    def test_subset_with_fewer_classes(self):
        out = os.path.join(self.tmp, "val")
        argv = ["--first", "1", "--num-images", "2", "--categories", "bar"]
        status, text = self.run_tool(out, *argv)
        self.assertEqual(status, 0, text)
        self.assertIn("2 images, 2 annotations, 1 categories (bar)", text)
        with open(os.path.join(out, "annotations.json")) as f:
            small = json.load(f)
        self.assertEqual([img["id"] for img in small["images"]], [2, 3])
        self.assertEqual({a["category_id"] for a in small["annotations"]}, {3})
        self.assertEqual(sorted(os.listdir(os.path.join(out, "images"))), ["1.jpg", "2.jpg"])
        check = check_coco_dataset(
            os.path.join(out, "annotations.json"), os.path.join(out, "images"), "polygon"
        )
        self.assertFalse(check.changed)
        self.assertEqual(check.thing_classes, ["bar"])

    def test_errors(self):
        out = os.path.join(self.tmp, "bad")
        status, text = self.run_tool(out, "--num-images", "2", "--categories", "cat")
        self.assertEqual(status, 2)
        self.assertIn("--categories: cat not in the dataset's categories (blob, bar)", text)
        status, text = self.run_tool(out, "--first", "4", "--num-images", "2")
        self.assertEqual(status, 2)
        self.assertIn("the dataset has only 4 images", text)
        status, text = self.run_tool(out, "--num-images", "2", "--dataset", "src", "no.json", out)
        self.assertEqual(status, 2)
        self.assertIn("--dataset src: annotations not found: no.json", text)
        status, text = self.run_tool(out, "--num-images", "2", "--dataset", "shapes_vall")
        self.assertEqual(status, 2)
        self.assertIn("no dataset named 'shapes_vall' is registered. Did you mean shapes_val", text)
        self.assertFalse(os.path.exists(out))

    def test_registered_dataset(self):
        # A registered dataset's own files (a tiny embedded shapes split, generated here).
        from engine.workflow_helpers import TinySplit, register_in_process, unregister_in_process

        split = TinySplit("_test_coco_subset_src", 3, 12, os.path.join(self.tmp, "datasets"))
        register_in_process(split)
        self.addCleanup(unregister_in_process, split)
        out = os.path.join(self.tmp, "from_registered")
        argv = ["--dataset", split.name, "--num-images", "2", "--output", out]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(coco_subset.main(argv), 0)
        self.assertIn("2 images", stdout.getvalue())
        self.assertEqual(len(os.listdir(os.path.join(out, "images"))), 2)


if __name__ == "__main__":
    unittest.main()
