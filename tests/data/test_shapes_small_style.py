"""
The "small" shapes style (``shapes_small_train`` / ``shapes_small_val``: dense scenes of 8-40 px
objects with the default classes) and the pinned output of every style.

Nothing here generates the registered splits: scenes are generated in memory (image i of a split
depends only on its style, seed and i, so the first images of seed 101 are those of
``shapes_small_train``), and the COCO json is checked on a few images under a temporary root.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import unittest

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json
from pycocotools.coco import COCO

from tensormask_proj.data.coco_checks import check_coco_dataset
from tensormask_proj.data.datasets import (
    DEFAULT_CLASSES,
    GENERATOR_VERSION,
    SCENE_STYLES,
    SHAPES_SPLITS,
    ShapesSplit,
    prepare_split,
)
from tensormask_proj.data.datasets.shape_geometry import polygon_area
from tensormask_proj.data.datasets.shape_scene import generate_image

STYLE = SCENE_STYLES["small"]
COCO_SMALL_AREA = 32**2


class TestSmallStyleScenes(unittest.TestCase):
    """80 images of seed 101 (the first 80 of shapes_small_train)."""

    @classmethod
    def setUpClass(cls):
        cls.full_sides, cls.sides, cls.areas, cls.classes, cls.counts = [], [], [], [], []
        cls.occluded = cls.crowds = 0
        for index in range(80):
            scene = generate_image(seed=101, index=index, style=STYLE)
            if scene.image.shape[0] != 192 or not 192 <= scene.image.shape[1] <= 256:
                raise AssertionError(f"image {index}: size {scene.image.shape[:2]}")
            cls.counts.append(len(scene.annotations))
            for ann, obj in zip(scene.annotations, scene.objects):
                if ann["iscrowd"]:
                    cls.crowds += 1
                    continue
                cls.full_sides.append(max(np.ptp(obj.polygons[0], axis=0)))
                cls.sides.append(max(ann["bbox"][2:]))
                cls.areas.append(ann["area"])
                cls.classes.append(ann["category_id"])
                cls.occluded += ann["area"] < 0.98 * polygon_area(obj.polygons[0])
        cls.full_sides, cls.sides = np.array(cls.full_sides), np.array(cls.sides)
        cls.areas, cls.counts = np.array(cls.areas), np.array(cls.counts)

    def test_style(self):
        self.assertEqual(STYLE.classes, DEFAULT_CLASSES)
        self.assertEqual(STYLE.image_height, 192)
        self.assertEqual(STYLE.image_width_range, SCENE_STYLES["default"].image_width_range)
        self.assertEqual((STYLE.min_objects, STYLE.max_objects), (6, 14))
        self.assertAlmostEqual(STYLE.min_object_size, 8.0)
        self.assertAlmostEqual(STYLE.max_object_size_fraction * STYLE.image_height, 40.0)

    def test_sizes_within_range(self):
        # The drawn size (larger side of the whole object's box) is in [8, 40] px...
        self.assertGreaterEqual(self.full_sides.min(), 8.0 - 1e-6)
        self.assertLessEqual(self.full_sides.max(), 40.0 + 1e-6)
        # ...and spans it (log-uniform: about as many objects in 8-16 px as in 20-40 px).
        self.assertGreater((self.full_sides < 12).mean(), 0.15)
        self.assertGreater((self.full_sides > 30).mean(), 0.1)
        # The annotated (visible) box: an outline traced around an occluded part may reach a
        # sub-pixel further than the object.
        self.assertLessEqual(self.sides.max(), 40.5)
        self.assertTrue(15 < np.median(self.sides) < 21, np.median(self.sides))

    def test_mostly_coco_small(self):
        # COCOeval's "small": annotated area under 32^2 px.
        share = (self.areas < COCO_SMALL_AREA).mean()
        self.assertGreaterEqual(share, 0.9, share)

    def test_dense_scenes(self):
        self.assertLessEqual(self.counts.max(), 14)
        # An image has 6-14 objects unless it is one of the few empty ones (2%) or occlusion
        # removed some.
        self.assertGreater(self.counts.mean(), 8.0)
        self.assertGreater((self.counts >= 6).mean(), 0.9)

    def test_default_classes_occlusion_and_no_crowds(self):
        per_class = np.bincount(self.classes, minlength=len(DEFAULT_CLASSES) + 1)[1:]
        self.assertGreater(per_class.min(), 0.1 * per_class.sum(), per_class)
        self.assertEqual(self.crowds, 0)
        self.assertGreater(self.occluded, 40)  # overlaps happen in dense scenes

    def test_min_objects_is_checked(self):
        for lo, hi in ((0, 4), (5, 4)):
            with self.subTest(min_objects=lo, max_objects=hi):
                with self.assertRaisesRegex(ValueError, "min_objects"):
                    dataclasses.replace(STYLE, min_objects=lo, max_objects=hi)


class TestSmallStyleCoco(unittest.TestCase):
    """A few images of the small style written as a split: a valid COCO json."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        split = ShapesSplit("small_mini", num_images=24, seed=101, style="small")
        cls.paths = prepare_split(split, cls._tmp.name, progress=False)
        with open(cls.paths.json_file) as f:
            cls.coco = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_project_checks_find_nothing(self):
        check = check_coco_dataset(self.paths.json_file, self.paths.image_root, "polygon")
        self.assertFalse(check.changed, check.summary())
        self.assertEqual(check.thing_classes, list(DEFAULT_CLASSES))

    def test_pycocotools_and_detectron2_read_it(self):
        api = COCO(self.paths.json_file)
        self.assertEqual(len(api.getImgIds()), 24)
        self.assertEqual(len(api.getAnnIds()), len(self.coco["annotations"]))
        self.assertGreater(len(self.coco["annotations"]), 24 * 6)
        dicts = load_coco_json(self.paths.json_file, self.paths.image_root, None)
        self.assertEqual(len(dicts), 24)
        for d in dicts:
            self.assertTrue(os.path.isfile(d["file_name"]), d["file_name"])

    def test_area_and_bbox_match_the_masks(self):
        sizes = {im["id"]: (im["height"], im["width"]) for im in self.coco["images"]}
        for a in self.coco["annotations"]:
            self.assertFalse(a["iscrowd"])
            h, w = sizes[a["image_id"]]
            rle = mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w))
            self.assertEqual(float(mask_util.area(rle)), a["area"])
            self.assertGreater(a["area"], 0)
            x, y, bw, bh = a["bbox"]
            self.assertTrue(0 <= x and 0 <= y and x + bw <= w and y + bh <= h, a["bbox"])
            xy = np.concatenate([np.reshape(p, (-1, 2)) for p in a["segmentation"]])
            np.testing.assert_allclose(xy.min(0), [x, y], atol=0.011)
            np.testing.assert_allclose(xy.max(0), [x + bw, y + bh], atol=0.011)


class TestSmallRegistration(unittest.TestCase):
    def test_names_splits_and_metadata(self):
        for name, dirname, num_images, seed in (
            ("shapes_small_train", "small_train", 400, 101),
            ("shapes_small_val", "small_val", 100, 202),
        ):
            self.assertEqual(SHAPES_SPLITS[name], ShapesSplit(dirname, num_images, seed, "small"))
            self.assertIn(name, DatasetCatalog.list())
            meta = MetadataCatalog.get(name)
            # The quick configs' 6 classes fit: the default style's classes and ids.
            self.assertEqual(meta.thing_classes, list(DEFAULT_CLASSES))
            self.assertEqual(meta.thing_classes, MetadataCatalog.get("shapes_train").thing_classes)
            self.assertEqual(
                meta.thing_dataset_id_to_contiguous_id, {i: i - 1 for i in range(1, 7)}
            )
            self.assertEqual(meta.evaluator_type, "coco")
            self.assertTrue(meta.image_root.endswith(os.path.join("shapes", dirname)))


def _digest(style: str, seed: int, num_images: int = 8) -> str:
    """sha256 of the raw pixels and annotations of the first images of (style, seed)."""
    h = hashlib.sha256()
    for index in range(num_images):
        scene = generate_image(seed, index, SCENE_STYLES[style])
        h.update(scene.image.tobytes())
        h.update(json.dumps(scene.annotations, sort_keys=True).encode())
    return h.hexdigest()


class TestPinnedOutput(unittest.TestCase):
    """
    A split on disk is regenerated only when GENERATOR_VERSION changes, so a style's output
    must not change without it: adding a style (or a knob) must leave the others' images and
    annotations as they were. Pinned: the first 8 images of seeds 101 and 202 (the train and
    val seeds) of every style, generator version 6. On a deliberate change of a style's
    output, bump GENERATOR_VERSION and re-pin; a failure after a numpy or OpenCV upgrade alone
    means the same images can no longer be reproduced, worth a look too.
    """

    PINNED = {
        6: {
            ("default", 101): "644687a4091194ec3492e5fcf6e1ae8f527df1ff54c6e13057b49356eacd32ad",
            ("default", 202): "dfc2d973b0fe20c274b57607229d69d15436a31ab39e551ebf0f77ab4a6cd367",
            ("stress", 101): "0438df6bfdca7ffb04607b487ed86b4b81d549239378e52df07d399233d05476",
            ("stress", 202): "2e6c77e0d782ba6cb4716cb380b383af7d3aafb38f9028eb0f41ef5215047685",
            ("small", 101): "6dd63b8e67a94d56f65e9863a93bf3b37ee1396f40293dcf4aaae468263d262c",
            ("small", 202): "36f75ea23f0edaad8ad552058202812066112d07965267a65fdcf742b1ca9272",
        }
    }

    def test_every_style_matches_its_pinned_output(self):
        self.assertIn(GENERATOR_VERSION, self.PINNED, "re-pin the digests for this version")
        pinned = self.PINNED[GENERATOR_VERSION]
        self.assertEqual({style for style, _ in pinned}, set(SCENE_STYLES))
        for (style, seed), expected in pinned.items():
            with self.subTest(style=style, seed=seed):
                self.assertEqual(_digest(style, seed), expected)


if __name__ == "__main__":
    unittest.main()
