"""
benchmarks/positives_by_level.py on a user's COCO data: ``--dataset NAME JSON IMAGE_DIR``
registers it (checked) and the last --dataset is the one counted; a wrong name is refused.
"""
import contextlib
import io
import os
import shutil
import sys
import tempfile
import unittest

from detectron2.data import DatasetCatalog, MetadataCatalog

from data.coco_fixtures import annotation, coco_json, write_image
from project_testing import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import positives_by_level  # noqa: E402

NAME = "_test_positives_mine"


class TestPositivesByLevel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_positives_by_level_")
        images = os.path.join(cls.tmp, "images")
        os.makedirs(images)
        entries = [write_image(images, f"{i}.jpg", "rgb", 96, 128) for i in range(2)]
        # Two objects per image.
        anns = [annotation(i, box=b) for i in (1, 2) for b in ((20, 20, 40, 36), (80, 60, 12, 10))]
        cls.json = coco_json(os.path.join(cls.tmp, "mine.json"), entries, anns)
        cls.images = images

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        if NAME in DatasetCatalog.list():
            DatasetCatalog.remove(NAME)
            MetadataCatalog.remove(NAME)

    def test_own_dataset(self):
        out = io.StringIO()
        argv = ["--dataset", NAME, self.json, self.images, "MODEL.TENSOR_MASK.NUM_CLASSES", "2"]
        with contextlib.redirect_stdout(out):
            self.assertEqual(positives_by_level.main(argv), 0)
        first = out.getvalue().splitlines()[0]
        self.assertTrue(first.startswith(f"{NAME}: 4 objects, "), first)
        self.assertEqual(
            [line.split(":")[0].strip() for line in out.getvalue().splitlines()[1:]],
            ["p2", "p3", "p4", "p5", "p6"],  # the quick config's levels
        )

    def test_unknown_dataset(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            positives_by_level.main(["--dataset", "shapes_trian"])
        self.assertIn("no dataset named 'shapes_trian' is registered. Did you mean", err.getvalue())


if __name__ == "__main__":
    unittest.main()
