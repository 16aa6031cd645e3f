"""
ClassConfusion on hand-made masks (every count and AP known in advance), and
tools/class_confusion.py end to end on a tiny shapes split: its class-aware AP equals
COCOEvaluator's on the same model's predictions.
"""

import contextlib
import io
import os
import shutil
import tempfile
import unittest

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from engine.workflow_helpers import (
    REPO_ROOT,
    TENSORMASK_CONFIG,
    TinySplit,
    load_script,
    register_in_process,
    unregister_in_process,
    workflow_cfg,
    workflow_opts,
)

from tensormask_proj.engine import cpu_autocast
from tensormask_proj.evaluation import ClassConfusion, covering_detections

TOOL = os.path.join(REPO_ROOT, "tools", "class_confusion.py")

H, W = 40, 60


def square(x0, y0, side):
    """RLE and XYXY box of a filled square."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0 : y0 + side, x0 : x0 + side] = 1
    return mask_util.encode(np.asfortranarray(mask)), [x0, y0, x0 + side, y0 + side]


class TestCoveringDetections(unittest.TestCase):
    def test_best_score_among_overlapping(self):
        gt, _ = square(10, 10, 10)
        exact, _ = square(10, 10, 10)
        shifted, _ = square(11, 10, 10)  # IoU 90/110 = 0.82
        far, _ = square(40, 20, 10)
        covering = covering_detections([gt], [exact, shifted, far], np.array([0.3, 0.6, 0.9]), 0.5)
        self.assertEqual(covering.tolist(), [1])  # the shifted one scores higher than the exact
        covering = covering_detections([gt], [exact, shifted, far], np.array([0.3, 0.6, 0.9]), 0.95)
        self.assertEqual(covering.tolist(), [0])
        covering = covering_detections([gt], [far], np.array([0.9]), 0.5)
        self.assertEqual(covering.tolist(), [-1])

    def test_empty(self):
        gt, _ = square(10, 10, 10)
        self.assertEqual(covering_detections([gt], [], np.zeros(0), 0.5).tolist(), [-1])
        self.assertEqual(covering_detections([], [gt], np.ones(1), 0.5).tolist(), [])


class TestClassConfusion(unittest.TestCase):
    def test_counts_scores_and_ap(self):
        names = ["a", "b", "c"]
        confusion = ClassConfusion(names)
        (m0, b0), (m1, b1), (m2, b2), (crowd, bc) = (
            square(2, 2, 8),
            square(20, 2, 12),
            square(40, 20, 6),
            square(2, 25, 10),
        )
        # Instance 0 (class a) found as a; instance 1 (class b) found as c with a higher score
        # than a b-detection that covers it too; instance 2 (class c) missed; the crowd region
        # is not an instance to find.
        confusion.add_image(
            H,
            W,
            [m0, m1, m2, crowd],
            np.array([b0, b1, b2, bc]),
            [0, 1, 2, 0],
            [False, False, False, True],
            [m0, m1, m1],
            np.array([b0, b1, b1]),
            [0.8, 0.7, 0.4],
            [0, 2, 1],
        )
        expected = np.zeros((3, 4), dtype=np.int64)
        expected[0, 0] = expected[1, 2] = expected[2, 3] = 1
        np.testing.assert_array_equal(confusion.matrix, expected)
        summary = confusion.summary()
        self.assertEqual((summary["instances"], summary["found"], summary["correct"]), (3, 2, 1))
        self.assertEqual(summary["by_size"]["small"], [3, 2, 1])  # all below 32^2 px^2
        self.assertAlmostEqual(summary["mean_image_best_score"], 0.8)
        self.assertAlmostEqual(summary["mean_covering_score"], 0.75)
        # With classes: a perfect (AP 100), b found at rank 1 of its class (100), c only a
        # false positive (0) -> mean 66.7. Without classes the three detections are one
        # ranking: 0.8 hit, 0.7 hit, 0.4 duplicate; recall 2/3 -> AP ~ 66.
        self.assertAlmostEqual(summary["ap"]["segm"], 200 / 3, places=3)
        self.assertAlmostEqual(summary["ap"]["bbox"], 200 / 3, places=3)
        agnostic = summary["ap_class_agnostic"]["segm"]
        self.assertGreater(agnostic, 60)
        self.assertLess(agnostic, 70)
        text = confusion.format()
        self.assertIn("right class 1 (33%)", text)
        self.assertIn("missed", text)

    def test_ap_by_size(self):
        # A small square (8 px side) detected exactly; a medium one (34 px, 1156 px^2) detected
        # shifted 8 px: IoU 884 / 1428 = 0.62, a match at IoU 0.5, 0.55 and 0.6 of COCO's ten
        # thresholds -> medium AP 30, AP50 100, AP75 0. No large object: NaN.
        confusion = ClassConfusion(["a"])
        (small, small_box), (medium, medium_box) = square(46, 2, 8), square(2, 2, 34)
        shifted, shifted_box = square(10, 2, 34)
        confusion.add_image(
            H,
            W,
            [small, medium],
            np.array([small_box, medium_box]),
            [0, 0],
            [False, False],
            [small, shifted],
            np.array([small_box, shifted_box]),
            [0.9, 0.8],
            [0, 0],
        )
        by_size = confusion.summary()["ap_by_size"]
        for iou_type in ("segm", "bbox"):
            table = by_size[iou_type]
            np.testing.assert_allclose(table["small"], (100, 100, 100), atol=1e-6)
            np.testing.assert_allclose(table["medium"], (30, 100, 0), atol=1e-6)
            self.assertTrue(all(np.isnan(table["large"])))
            self.assertAlmostEqual(table["all"][1], 100, places=6)
        self.assertIn("medium", confusion.format())

    def test_outline_fit(self):
        # Class a: one square found exactly (mask and box IoU 1) and one found shifted by 1 px
        # (IoU 90 / 110 for both); class b: a square whose detection has the exact box but
        # only its left half as mask (mask IoU 0.5, box IoU 1). All small.
        confusion = ClassConfusion(["a", "b"])
        (m0, b0), (m1, b1), (m2, b2) = square(2, 2, 10), square(20, 2, 10), square(40, 20, 10)
        shifted, shifted_box = square(21, 2, 10)
        half = np.zeros((H, W), dtype=np.uint8)
        half[20:30, 40:45] = 1
        half = mask_util.encode(np.asfortranarray(half))
        confusion.add_image(
            H, W, [m0, m1, m2], np.array([b0, b1, b2]), [0, 0, 1], [False] * 3,
            [m0, shifted, half], np.array([b0, shifted_box, b2]), [0.9, 0.8, 0.7], [0, 0, 1],
        )  # fmt: skip
        fit = confusion.summary()["outline_fit"]
        count, mask_iou, box_iou, tight = fit["a"]["small"]
        self.assertEqual(count, 2)
        self.assertAlmostEqual(mask_iou, (1 + 90 / 110) / 2)
        self.assertAlmostEqual(box_iou, (1 + 90 / 110) / 2)
        self.assertEqual(tight, 1.0)
        np.testing.assert_allclose(fit["b"]["small"], (1, 0.5, 1.0, 0.0))
        self.assertEqual(fit["all"]["small"][0], 3)
        self.assertAlmostEqual(fit["all"]["small"][3], 2 / 3)
        self.assertEqual(fit["a"]["medium"][0], 0)
        self.assertTrue(np.isnan(fit["a"]["medium"][1]))
        text = confusion.format()
        self.assertIn("0.909 0.909 100% (2)", text)
        self.assertIn("0.500 1.000   0% (1)", text)

    def test_no_detections(self):
        confusion = ClassConfusion(["a"])
        m, b = square(2, 2, 8)
        confusion.add_image(H, W, [m], np.array([b]), [0], [False], [], np.zeros((0, 4)), [], [])
        summary = confusion.summary()
        self.assertEqual(confusion.matrix.tolist(), [[0, 1]])
        self.assertEqual(summary["ap"], {"segm": 0.0, "bbox": 0.0})
        self.assertEqual(summary["mean_image_best_score"], 0.0)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "iou_threshold"):
            ClassConfusion(["a"], iou_threshold=0.0)
        confusion = ClassConfusion(["a", "b"])
        m, b = square(2, 2, 8)
        with self.assertRaisesRegex(ValueError, r"detection class 5 is outside the 2 classes"):
            confusion.add_image(
                H, W, [m], np.array([b]), [0], [False], [m], np.array([b]), [0.5], [5]
            )
        with self.assertRaisesRegex(ValueError, r"ground-truth class -1"):
            confusion.add_image(
                H, W, [m], np.array([b]), [-1], [False], [], np.zeros((0, 4)), [], []
            )


class TestClassConfusionTool(unittest.TestCase):
    """The tool on an untrained quick TensorMask (score threshold 0: it detects plenty)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_class_confusion_")
        cls.split = TinySplit("_test_confusion_val3", 3, 12, os.path.join(cls.tmp, "datasets"))
        register_in_process(cls.split)
        torch.manual_seed(0)
        cfg = workflow_cfg(TENSORMASK_CONFIG, "DATASETS.TEST", f"('{cls.split.name}',)")
        model = build_model(cfg)
        cls.weights = os.path.join(cls.tmp, "model.pth")
        DetectionCheckpointer(model, save_dir=cls.tmp).save("model")
        cls.cfg = cfg
        cls.model = model.eval()

    @classmethod
    def tearDownClass(cls):
        unregister_in_process(cls.split)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def argv(self, *extra):
        return (
            ["--config-file", TENSORMASK_CONFIG, "--dataset", self.split.name]
            + list(extra)
            + workflow_opts(TENSORMASK_CONFIG)
            + ["MODEL.WEIGHTS", self.weights]
        )

    def test_unreadable_image_is_left_out(self):
        # A copy of the split whose first image keeps its JPEG header but loses the end of
        # its data: it passes the dataset checks, then cannot be decoded.
        paths = register_in_process(self.split)
        images = os.path.join(self.tmp, "damaged_images")
        shutil.copytree(paths.image_root, images)
        records = DatasetCatalog.get(self.split.name)
        damaged = os.path.join(images, os.path.basename(records[0]["file_name"]))
        with open(damaged, "r+b") as f:
            f.truncate(os.path.getsize(damaged) * 2 // 3)
        argv = ["--config-file", TENSORMASK_CONFIG]
        argv += ["--dataset", "_test_confusion_damaged", paths.json_file, images]
        argv += workflow_opts(TENSORMASK_CONFIG) + ["MODEL.WEIGHTS", self.weights]
        tool = load_script(TOOL, "class_confusion_tool")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            confusion = tool.main(argv)
        readable = sum(1 for r in records[1:] for a in r["annotations"] if not a.get("iscrowd", 0))
        self.assertGreater(readable, 0)
        self.assertEqual(int(confusion.matrix.sum()), readable)
        self.assertIn("3 images, 1 unreadable left out", printed.getvalue())

    def test_matches_coco_evaluator(self):
        tool = load_script(TOOL, "class_confusion_tool")
        confusion = tool.main(self.argv())
        records = DatasetCatalog.get(self.split.name)
        instances = sum(1 for r in records for a in r["annotations"] if not a.get("iscrowd", 0))
        self.assertEqual(int(confusion.matrix.sum()), instances)
        evaluator = COCOEvaluator(
            self.split.name, output_dir=os.path.join(self.tmp, "eval"), use_fast_impl=False
        )
        with torch.no_grad(), cpu_autocast(self.cfg):  # as the tool (SOLVER.AMP on a CPU)
            results = inference_on_dataset(
                self.model, build_detection_test_loader(self.cfg, self.split.name), evaluator
            )
        ap = confusion.summary()["ap"]
        self.assertAlmostEqual(ap["segm"], results["segm"]["AP"], places=3)
        self.assertAlmostEqual(ap["bbox"], results["bbox"]["AP"], places=3)

    def test_errors_name_the_problem(self):
        tool = load_script(TOOL, "class_confusion_tool")
        # The last --dataset is the one evaluated; an unknown name is refused, with the names
        # it may have meant.
        message = "--dataset _test_confusion_val: no dataset named '_test_confusion_val' is "
        with self.assertRaisesRegex(ValueError, message + r"registered\. Did you mean _test_conf"):
            tool.main(self.argv("--dataset", "_test_confusion_val"))
        empty_test = self.argv()
        del empty_test[2:4]  # no --dataset
        with self.assertRaisesRegex(ValueError, "no dataset to evaluate: DATASETS.TEST is empty"):
            tool.main(empty_test + ["DATASETS.TEST", "()"])
        argv = self.argv()
        argv[argv.index("MODEL.WEIGHTS") + 1] = ""
        with self.assertRaisesRegex(ValueError, "MODEL.WEIGHTS is empty"):
            tool.main(argv)
        record = {
            "file_name": "boxes_only.jpg",
            "image_id": 7,
            "height": 8,
            "width": 8,
            "annotations": [
                {"bbox": [1, 1, 3, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}
            ],
        }
        with self.assertRaisesRegex(ValueError, r"boxes_only.jpg \(id 7\): .* no segmentation"):
            tool._ground_truth(record)
        with self.assertRaisesRegex(ValueError, r"gives no masks \(MODEL.MASK_ON False\)"):
            tool.main(self.argv() + ["MODEL.MASK_ON", "False"])


if __name__ == "__main__":
    unittest.main()
