"""
The shapes datasets as detectron2 sees them: catalogs, dataset dicts, statistics of the real
splits, the default DatasetMapper, and COCOEvaluator.

These tests use the registered ``shapes_train`` / ``shapes_val`` (generated under
``$DETECTRON2_DATASETS`` on first use, ~25 s once, then cached) because that is what training and
evaluation use.
"""

import json
import os
import tempfile
import unittest

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances, PolygonMasks
from PIL import Image

from tensormask_proj.data.datasets import (
    DEFAULT_CLASSES,
    SHAPE_COLORS,
    STRESS_CLASSES,
    ShapesSplit,
    prepare_dataset,
    register_shapes,
    unregister_shapes,
)


def _max_side(ann):
    return max(ann["bbox"][2], ann["bbox"][3])


class TestRegistration(unittest.TestCase):
    def test_names_and_metadata(self):
        for name, dirname, classes in (
            ("shapes_train", "train", DEFAULT_CLASSES),
            ("shapes_val", "val", DEFAULT_CLASSES),
            ("shapes_stress_train", "stress_train", STRESS_CLASSES),
            ("shapes_stress_val", "stress_val", STRESS_CLASSES),
        ):
            self.assertIn(name, DatasetCatalog.list())
            meta = MetadataCatalog.get(name)
            self.assertEqual(meta.thing_classes, list(classes))
            self.assertEqual(meta.thing_colors, [list(SHAPE_COLORS[c]) for c in classes])
            self.assertEqual(len({tuple(c) for c in meta.thing_colors}), len(classes))
            self.assertEqual(meta.evaluator_type, "coco")
            self.assertEqual(
                meta.thing_dataset_id_to_contiguous_id, {i: i - 1 for i in range(1, 7)}
            )
            self.assertTrue(meta.image_root.endswith(os.path.join("shapes", dirname)))
        self.assertEqual(DEFAULT_CLASSES, ("circle", "triangle", "ring", "star", "bar", "cross"))
        # The stress set keeps the original classes.
        self.assertEqual(
            STRESS_CLASSES, ("circle", "triangle", "square", "star", "hexagon", "cross")
        )

    def test_bad_style_and_classes_are_named(self):
        import dataclasses

        from tensormask_proj.data.datasets import SCENE_STYLES, get_shapes_metadata

        with self.assertRaisesRegex(KeyError, "'defualt'"):
            get_shapes_metadata("defualt")
        for classes in (("circle", "oval"), ("ring", "ring"), ()):
            with self.subTest(classes=classes):
                with self.assertRaisesRegex(ValueError, r"SceneStyle\.classes"):
                    dataclasses.replace(SCENE_STYLES["default"], classes=classes)
        for angle in (0.0, 60.0, -5.0):
            with self.subTest(min_triangle_angle=angle):
                with self.assertRaisesRegex(ValueError, r"SceneStyle\.min_triangle_angle"):
                    dataclasses.replace(SCENE_STYLES["default"], min_triangle_angle=angle)

    def test_unknown_name_is_named(self):
        with self.assertRaisesRegex(KeyError, "shapes_tset"):
            prepare_dataset("shapes_tset")

    def test_generated_on_first_use(self):
        with tempfile.TemporaryDirectory() as root:
            for name in ("_test_shapes_lazy_dicts", "_test_shapes_lazy_json"):
                register_shapes(name, ShapesSplit("tiny", num_images=3, seed=5), root)
            try:
                json_file = os.path.join(root, "shapes", "annotations", "instances_tiny.json")
                self.assertFalse(os.path.exists(json_file))
                # Reading the json path (what COCOEvaluator does) generates the split...
                self.assertEqual(MetadataCatalog.get("_test_shapes_lazy_json").json_file, json_file)
                self.assertTrue(os.path.isfile(json_file))
                # ...and loading the dicts of another name with the same split reuses it.
                dicts = DatasetCatalog.get("_test_shapes_lazy_dicts")
                self.assertEqual(len(dicts), 3)
            finally:
                unregister_shapes("_test_shapes_lazy_dicts")
                unregister_shapes("_test_shapes_lazy_json")
        self.assertNotIn("_test_shapes_lazy_dicts", DatasetCatalog.list())

    def test_val_dicts(self):
        dicts = DatasetCatalog.get("shapes_val")
        self.assertEqual(len(dicts), 100)
        self.assertEqual(len({d["image_id"] for d in dicts}), 100)
        for d in dicts:
            with Image.open(d["file_name"]) as im:  # reads the header only
                self.assertEqual(im.size, (d["width"], d["height"]), d["file_name"])
            self.assertEqual(d["height"], 192)
            self.assertTrue(192 <= d["width"] <= 256)
            for ann in d["annotations"]:
                self.assertEqual(ann["bbox_mode"], BoxMode.XYWH_ABS)
                self.assertIn(ann["category_id"], range(len(DEFAULT_CLASSES)))
                x, y, w, h = ann["bbox"]
                self.assertTrue(0 <= x and 0 <= y and x + w <= d["width"] and y + h <= d["height"])
                if ann["iscrowd"]:
                    self.assertEqual(ann["segmentation"]["size"], [d["height"], d["width"]])
                    continue
                for poly in ann["segmentation"]:
                    self.assertEqual(len(poly) % 2, 0)
                    self.assertGreaterEqual(len(poly), 6)
                # The bbox is the polygons' extent.
                xy = np.concatenate([np.reshape(p, (-1, 2)) for p in ann["segmentation"]])
                np.testing.assert_allclose(xy.min(0), [x, y], atol=0.011)
                np.testing.assert_allclose(xy.max(0), [x + w, y + h], atol=0.011)


class TestTrainStatistics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dicts = DatasetCatalog.get("shapes_train")

    def test_objects_per_image(self):
        counts = np.array([sum(not a["iscrowd"] for a in d["annotations"]) for d in self.dicts])
        self.assertEqual(len(counts), 400)
        self.assertLessEqual(counts.max(), 4)
        self.assertTrue(1.8 < counts.mean() < 4, counts.mean())
        empty = int((counts == 0).sum())
        self.assertTrue(1 <= empty <= 0.06 * len(counts), empty)  # a few images without objects

    def test_sizes_reach_every_pyramid_level(self):
        sides = np.array(
            [_max_side(a) for d in self.dicts for a in d["annotations"] if not a["iscrowd"]]
        )
        self.assertLessEqual(sides.min(), 26)
        self.assertGreaterEqual(sides.max(), 0.6 * 192)
        # Every octave an FPN level is responsible for has a real share of the objects.
        for lo, hi in ((24, 32), (32, 64), (64, 128)):
            share = ((sides >= lo) & (sides < hi)).mean()
            self.assertGreater(share, 0.08, (lo, hi))

    def test_every_class_and_crowd_regions(self):
        anns = [a for d in self.dicts for a in d["annotations"]]
        per_class = np.bincount([a["category_id"] for a in anns if not a["iscrowd"]], minlength=6)
        self.assertGreater(per_class.min(), 0.1 * per_class.sum())
        self.assertTrue(3 <= sum(a["iscrowd"] for a in anns) <= 40)

    def test_json_area_and_bbox_match_the_masks(self):
        """COCOeval reads "area" (for its small/medium/large ranges) and "bbox" from the json."""
        with open(MetadataCatalog.get("shapes_train").json_file) as f:
            coco = json.load(f)
        sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
        box_errors = []
        for a in coco["annotations"]:
            seg = a["segmentation"]
            if a["iscrowd"]:
                rle = seg
            else:
                rle = mask_util.merge(mask_util.frPyObjects(seg, *sizes[a["image_id"]]))
            self.assertEqual(float(mask_util.area(rle)), a["area"])
            xyxy = BoxMode.convert(list(mask_util.toBbox(rle)), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
            expected = BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
            box_errors.append(np.abs(np.subtract(xyxy, expected)).max())
        # The box is the polygons' extent (COCO's definition); the rasterized mask's box is
        # within a pixel of it, except where a pointed tip reaches past the last pixel centre.
        box_errors = np.array(box_errors)
        self.assertGreater((box_errors <= 1.5).mean(), 0.98)
        self.assertLess(box_errors.max(), 3.0)

    def test_default_dataset_mapper(self):
        """detectron2's own mapper trains on these dicts: polygon and bitmask formats, crowd
        regions (dropped by the mapper) and images without objects."""
        crowd = next(d for d in self.dicts if any(a["iscrowd"] for a in d["annotations"]))
        empty = next(d for d in self.dicts if not d["annotations"])
        for mask_format, mask_type in (("polygon", PolygonMasks), ("bitmask", BitMasks)):
            mapper = DatasetMapper(
                is_train=True,
                augmentations=[T.ResizeShortestEdge(192, 320), T.RandomFlip()],
                image_format="BGR",
                use_instance_mask=True,
                instance_mask_format=mask_format,
            )
            out = mapper(crowd)
            inst = out["instances"]
            self.assertEqual(out["image"].shape[0], 3)
            self.assertEqual(len(inst), sum(not a["iscrowd"] for a in crowd["annotations"]))
            self.assertIsInstance(inst.gt_masks, mask_type)
            self.assertEqual(len(mapper(empty)["instances"]), 0)


def _gt_as_predictions(d, shift=0):
    """The ground truth of one dataset dict as a prediction (score 1), optionally moved right."""
    h, w = d["height"], d["width"]
    anns = [a for a in d["annotations"] if not a["iscrowd"]]
    inst = Instances((h, w))
    boxes = [BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for a in anns]
    inst.pred_boxes = Boxes(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) + torch.tensor([shift, 0, shift, 0])
    )
    inst.scores = torch.ones(len(anns))
    inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
    masks = [
        mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
        for a in anns
    ]
    masks = torch.from_numpy(np.stack(masks)).bool() if masks else torch.zeros(0, h, w).bool()
    inst.pred_masks = torch.roll(masks, shifts=shift, dims=2)
    return inst


class TestCOCOEvaluation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dicts = DatasetCatalog.get("shapes_val")

    def _evaluate(self, shift):
        evaluator = COCOEvaluator(
            "shapes_val", tasks=("bbox", "segm"), distributed=False, use_fast_impl=False
        )
        evaluator.reset()
        for d in self.dicts:
            evaluator.process(
                [{"image_id": d["image_id"]}], [{"instances": _gt_as_predictions(d, shift)}]
            )
        return evaluator.evaluate()

    def test_ground_truth_scores_100(self):
        results = self._evaluate(shift=0)
        self.assertGreater(results["bbox"]["AP"], 99.9)
        self.assertGreater(results["segm"]["AP"], 99.9)
        for name in DEFAULT_CLASSES:
            self.assertGreater(results["segm"][f"AP-{name}"], 99.9)

    def test_perturbed_predictions_score_less(self):
        results = self._evaluate(shift=3)
        self.assertLess(results["bbox"]["AP"], 90)
        self.assertLess(results["segm"]["AP"], 90)
        # A 3 px shift costs small objects more than medium ones. (Objects above COCO's "large"
        # area, 96^2 px, are rare: at most 2/3 of the 192 px image high, and the ring and bar
        # cover well under their box.)
        self.assertLess(results["segm"]["APs"], results["segm"]["APm"])


if __name__ == "__main__":
    unittest.main()
