"""
Your own COCO data from the command line (``--dataset NAME JSON IMAGE_DIR``), in process:

* one crafted dataset holding every accepted oddity of issue 11 (grayscale, RGBA and 16-bit RGB
  PNGs, an EXIF-rotated JPEG, a 1x1 px image, compressed and uncompressed RLE masks, polygons of
  fewer than 3 points, a collinear polygon beside a valid one, a polygon reaching x = 1e7, an
  empty segmentation, boxes partly and wholly outside the image, a zero-area box, a box of
  negative width, a crowd region) goes through both models' training mappers image by image,
  and trains 2 iterations then evaluates with ``train_net.main`` for both models (the APs
  logged are pycocotools' against the checked json); the evaluator scores the checked
  objects themselves AP 100;
* the errors come from ``setup``, before training: a wrong class count (naming both numbers and
  the keys), a bad annotation (naming file, image id and annotation id; nothing written) and a
  dataset whose every annotation is skipped (instead of detectron2's "No valid data found");
* the flag itself: ``--dataset NAME`` (a registered dataset) or ``NAME JSON IMAGE_DIR``,
  repeatable, config overrides right after it; errors naming the problem.
"""

import argparse
import contextlib
import io
import json
import os
import unittest

import numpy as np
import torch
from data.coco_fixtures import OddDatasetTestCase, annotation, coco_json, picture
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import annotations_to_instances, read_image
from detectron2.structures import Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tensormask_proj.data.coco_checks import CocoDatasetError
from tensormask_proj.data.dataset_mapper import build_train_mapper
from tensormask_proj.engine import (
    ConfigKeyEndsList,
    DatasetSpec,
    Trainer,
    add_dataset_argument,
    chosen_dataset,
    register_command_line_datasets,
)

from .workflow_helpers import (
    BLENDMASK_CONFIG,
    TENSORMASK_CONFIG,
    TRAIN_NET,
    cfg_opts,
    evaluation_records,
    load_script,
    read_metrics,
    workflow_cfg,
    workflow_opts,
)

train_net = load_script(TRAIN_NET, "train_net")


def coco_ap(json_file, predictions, task):
    """
    The AP (in %) of ``predictions`` (COCO results) on every image of ``json_file`` for
    ``task`` ("bbox" or "segm"), by pycocotools' own COCOeval, set up as detectron2's
    COCOEvaluator sets it up: masks without their boxes (so areas are mask areas).
    """
    if task == "segm":
        predictions = [{k: v for k, v in p.items() if k != "bbox"} for p in predictions]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO(json_file)
        evaluation = COCOeval(coco, coco.loadRes(predictions), task)
        evaluation.params.imgIds = sorted(coco.getImgIds())
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0] * 100


NAME = "_test_own_coco"
NUM_CLASSES_OPTS = {
    TENSORMASK_CONFIG: {"MODEL.TENSOR_MASK.NUM_CLASSES": 2},
    BLENDMASK_CONFIG: {"MODEL.FCOS.NUM_CLASSES": 2, "MODEL.BASIS_MODULE.NUM_CLASSES": 2},
}


class OwnDataset(OddDatasetTestCase):
    NAME = NAME

    def args(self, config, out, *opts, json_file=None):
        argv = ["--config-file", config, "--dataset", NAME, json_file or self.json, self.images]
        argv += workflow_opts(config) + ["OUTPUT_DIR", out]
        argv += cfg_opts({"DATASETS.TRAIN": f"('{NAME}',)", "DATASETS.TEST": f"('{NAME}',)"})
        return train_net.default_argument_parser().parse_args(argv + list(opts))


class TestOwnDatasetTrains(OwnDataset):
    def check_mappers(self, config):
        cfg = workflow_cfg(config, "INPUT.MASK_FORMAT", "bitmask")
        cache = os.path.join(self.tmp, "checked_" + os.path.basename(config))
        register_command_line_datasets([(NAME, self.json, self.images)], cfg, cache)
        mapper = build_train_mapper(cfg)
        dicts = DatasetCatalog.get(NAME)
        # 16 annotations - 4 skipped; the crowd region stays in the dicts, not in instances.
        self.assertEqual(sum(len(d["annotations"]) for d in dicts), 12)
        by_file = {}
        for d in dicts:
            out = mapper(d)
            image = out["image"]
            self.assertEqual(image.shape[0], 3)
            self.assertGreater(min(image.shape[1:]), 100)  # resized up from at most 64 px
            instances = out["instances"]
            self.assertEqual(instances.gt_masks.tensor.shape[0], len(instances))
            self.assertTrue(bool((instances.gt_boxes.area() > 0).all()))
            by_file[os.path.basename(d["file_name"])] = (out, d)
        # The 16-bit RGB PNG reads as its 8-bit pixels (detectron2's read_image, as the mappers);
        # the EXIF JPEG turned (portrait).
        rgb16 = read_image(by_file["rgb16.png"][1]["file_name"], format="RGB")
        np.testing.assert_array_equal(rgb16, picture("rgb16.png"))
        exif_image = by_file["exif.jpg"][0]["image"]
        self.assertGreater(exif_image.shape[1], exif_image.shape[2])
        self.assertEqual(len(by_file["tiny.png"][0]["instances"]), 1)
        self.assertEqual(len(by_file["rgb.jpg"][0]["instances"]), 2)
        # The polygon that reached x = 1e7, clipped, gives the mask of its part in the image:
        # the box (40, 30, 24, 10) of the 64 x 48 image, resized with it.
        instances = by_file["rgb16.png"][0]["instances"]
        scale = instances.image_size[1] / 64
        areas = instances.gt_masks.tensor.flatten(1).sum(1).float() / scale**2
        self.assertTrue(any(abs(a - 24 * 10) < 24 + 10 for a in areas.tolist()), areas)

    def train_and_evaluate(self, config):
        out = os.path.join(self.tmp, os.path.basename(config) + "_out")
        opts = {**NUM_CLASSES_OPTS[config], "INPUT.MASK_FORMAT": "bitmask", "SOLVER.MAX_ITER": 2}
        args = self.args(config, out, *cfg_opts(opts))
        train_net.main(args)
        # Skips and fixes are logged with their counts, in log.txt too.
        with open(os.path.join(out, "log.txt")) as f:
            log = f.read()
        self.assertIn("skipped 2 annotation(s): no usable mask", log)
        self.assertIn("skipped 1 annotation(s): box wholly outside its image", log)
        self.assertIn("skipped 1 annotation(s): zero-area box", log)
        self.assertIn("fixed 1 annotation(s): box clipped", log)
        self.assertIn("fixed 1 annotation(s): box of negative width or height replaced", log)
        self.assertIn("fixed 1 annotation(s): degenerate polygons", log)
        self.assertIn("fixed 1 annotation(s): polygons reaching more than one image size", log)
        checked = os.path.join(out, "checked_datasets", f"{NAME}.json")
        self.assertEqual(MetadataCatalog.get(NAME).json_file, checked)
        with open(checked) as f:
            self.assertEqual(len(json.load(f)["annotations"]), 12)
        # The model has to predict something for the evaluation to mean anything.
        with open(os.path.join(out, "inference", "coco_instances_results.json")) as f:
            predictions = json.load(f)
        self.assertGreater(len(predictions), 0)
        # Evaluated on the checked annotations: the APs logged for both tasks are pycocotools'
        # for the written predictions against the checked json, over all of its images.
        (record,) = evaluation_records(read_metrics(out))
        for task in ("bbox", "segm"):
            expected = coco_ap(checked, predictions, task)
            self.assertAlmostEqual(record[f"{task}/AP"], expected, places=6, msg=task)

    def test_evaluation_scores_the_checked_annotations_100(self):
        # The project's evaluator of the registered dataset, given its dataset dicts' own objects
        # as predictions, scores AP 100 on both tasks: it evaluates the checked annotations
        # that training sees. Against the raw json (skipped objects missed, clipped and replaced
        # boxes moved), the same predictions score a box AP of 71 (measured).
        cfg = workflow_cfg(TENSORMASK_CONFIG, "INPUT.MASK_FORMAT", "bitmask")
        cfg.OUTPUT_DIR = os.path.join(self.tmp, "perfect_out")
        register_command_line_datasets([(NAME, self.json, self.images)], cfg)
        evaluator = Trainer.build_evaluator(cfg, NAME)
        evaluator.reset()
        for d in DatasetCatalog.get(NAME):
            objects = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
            gt = annotations_to_instances(objects, (d["height"], d["width"]), "bitmask")
            predictions = Instances(
                gt.image_size, pred_boxes=gt.gt_boxes, scores=torch.ones(len(gt))
            )
            predictions.pred_classes = gt.gt_classes
            predictions.pred_masks = gt.gt_masks.tensor
            evaluator.process([{"image_id": d["image_id"]}], [{"instances": predictions}])
        results = evaluator.evaluate()
        self.assertAlmostEqual(results["bbox"]["AP"], 100.0, places=4)
        self.assertAlmostEqual(results["segm"]["AP"], 100.0, places=4)

    def test_tensormask_mapper(self):
        self.check_mappers(TENSORMASK_CONFIG)

    def test_blendmask_mapper(self):
        self.check_mappers(BLENDMASK_CONFIG)

    def test_tensormask_trains_and_evaluates(self):
        self.train_and_evaluate(TENSORMASK_CONFIG)

    def test_blendmask_trains_and_evaluates(self):
        self.train_and_evaluate(BLENDMASK_CONFIG)


class TestErrorsBeforeTraining(OwnDataset):
    def test_class_count(self):
        out = os.path.join(self.tmp, "classes")
        with self.assertRaises(ValueError) as raised:
            train_net.setup(self.args(TENSORMASK_CONFIG, out, "INPUT.MASK_FORMAT", "bitmask"))
        self.assertIn(
            f"dataset '{NAME}' has 2 classes but the model has MODEL.TENSOR_MASK.NUM_CLASSES = 6",
            str(raised.exception),
        )
        self.assertIn("`MODEL.TENSOR_MASK.NUM_CLASSES 2`", str(raised.exception))
        self.tearDown()
        opts = ["INPUT.MASK_FORMAT", "bitmask", "MODEL.FCOS.NUM_CLASSES", "2"]
        with self.assertRaises(ValueError) as raised:
            train_net.setup(self.args(BLENDMASK_CONFIG, out, *opts))
        self.assertIn("MODEL.BASIS_MODULE.NUM_CLASSES = 6", str(raised.exception))
        self.assertNotIn("MODEL.FCOS.NUM_CLASSES = ", str(raised.exception))
        self.assertIn(
            "`MODEL.FCOS.NUM_CLASSES 2 MODEL.BASIS_MODULE.NUM_CLASSES 2`", str(raised.exception)
        )

    def test_rle_with_polygon_mask_format(self):
        out = os.path.join(self.tmp, "rle")
        opts = cfg_opts(NUM_CLASSES_OPTS[TENSORMASK_CONFIG])
        with self.assertRaises(CocoDatasetError) as raised:
            train_net.setup(self.args(TENSORMASK_CONFIG, out, *opts))
        message = str(raised.exception)
        self.assertIn(self.json, message)
        self.assertIn("annotation id 104 of image id 2 (file ", message)
        self.assertIn(os.path.join(self.images, "gray.png"), message)
        self.assertIn("INPUT.MASK_FORMAT bitmask", message)
        self.assertFalse(os.path.exists(out))  # nothing written

    def test_every_annotation_skipped(self):
        # detectron2 would log the skips, then stop with a bare "No valid data found".
        out = os.path.join(self.tmp, "all_skipped")
        images = [{"id": 1, "file_name": "rgb.jpg", "height": 48, "width": 64}]
        collinear = [[10, 10, 20, 20, 30, 30]]
        anns = [annotation(1, segmentation=collinear), annotation(1, bbox=[1, 1, 0, 0])]
        json_file = coco_json(os.path.join(self.tmp, "all_skipped.json"), images, anns)
        opts = cfg_opts({**NUM_CLASSES_OPTS[TENSORMASK_CONFIG], "INPUT.MASK_FORMAT": "bitmask"})
        with self.assertRaises(CocoDatasetError) as raised:
            train_net.setup(self.args(TENSORMASK_CONFIG, out, *opts, json_file=json_file))
        message = str(raised.exception)
        self.assertIn(f"{json_file}: none of its 2 annotations is left to train on", message)
        self.assertIn("skipped 1 annotation(s): every polygon degenerate", message)
        self.assertIn("skipped 1 annotation(s): zero-area box", message)
        self.assertFalse(os.path.exists(out))  # nothing written


class TestDatasetArgument(unittest.TestCase):
    """The flag's parsing and its errors (nothing is trained)."""

    def parser(self, opts=True):
        parser = argparse.ArgumentParser(prog="tool.py")
        parser.add_argument("--seeds", action=ConfigKeyEndsList, item_type=int, default=None)
        if opts:
            parser.add_argument("opts", nargs=argparse.REMAINDER)
        return add_dataset_argument(parser, help="What the tool does with it")

    def parse(self, *argv, opts=True):
        return self.parser(opts).parse_args(list(argv))

    def error(self, *argv, opts=True):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            self.parse(*argv, opts=opts)
        return err.getvalue()

    def test_forms(self):
        args = self.parse("--dataset", "shapes_val", "--dataset", "mine", "a.json", "images/")
        self.assertEqual(
            args.dataset, [DatasetSpec("shapes_val"), DatasetSpec("mine", "a.json", "images/")]
        )
        self.assertFalse(args.dataset[0].registers)
        self.assertEqual(str(args.dataset[1]), "mine a.json images/")
        self.assertEqual(self.parse().dataset, [])
        self.assertEqual(chosen_dataset(args.dataset, "default"), "mine")
        self.assertEqual(chosen_dataset([], "default"), "default")

    def test_config_overrides_may_follow(self):
        args = self.parse("--dataset", "mine", "a.json", "images/", "MODEL.WEIGHTS", "m.pth")
        self.assertEqual(args.dataset, [DatasetSpec("mine", "a.json", "images/")])
        self.assertEqual(args.opts, ["MODEL.WEIGHTS", "m.pth"])
        argv = ["--dataset", "shapes_val", "SEED", "1", "--seeds", "3", "4", "OUTPUT_DIR", "o"]
        args = self.parse(*argv)
        self.assertEqual((args.dataset, args.seeds), ([DatasetSpec("shapes_val")], [3, 4]))
        self.assertEqual(args.opts, ["SEED", "1", "OUTPUT_DIR", "o"])
        # Upper-case file names are not config keys (their first part is no top-level key).
        args = self.parse("--dataset", "mine", "DATA.JSON", "IMAGES", "TEST.EVAL_PERIOD", "0")
        self.assertEqual(args.dataset, [DatasetSpec("mine", "DATA.JSON", "IMAGES")])
        self.assertEqual(args.opts, ["TEST.EVAL_PERIOD", "0"])

    def test_parse_errors(self):
        self.assertIn(
            "tool.py: error: argument --dataset: expected NAME (a registered dataset) or NAME "
            "JSON IMAGE_DIR (a COCO dataset to register), got 2 values: mine a.json",
            self.error("--dataset", "mine", "a.json"),
        )
        self.assertIn("got 4 values", self.error("--dataset", "a", "b", "c", "d"))
        self.assertIn(
            "argument --dataset: unexpected SEED 1",
            self.error("--dataset", "a", "SEED", "1", opts=False),
        )
        help_text = self.parser().format_help()
        self.assertIn("--dataset NAME [JSON IMAGE_DIR]", help_text)
        self.assertIn("What the tool does with it", help_text)

    def test_registration_errors(self):
        cfg = workflow_cfg(TENSORMASK_CONFIG)
        with self.assertRaisesRegex(
            ValueError,
            "--dataset shapes_vall: no dataset named 'shapes_vall' is registered. Did you mean "
            "shapes_val",
        ):
            register_command_line_datasets([("shapes_vall",)], cfg)
        with self.assertRaisesRegex(
            ValueError, "this project's shapes_train, .*microcontroller_val"
        ):
            register_command_line_datasets([("no_such_data",)], cfg)
        with self.assertRaisesRegex(
            FileNotFoundError, "--dataset mine no.json images: COCO annotations not found: no.json"
        ):
            register_command_line_datasets([DatasetSpec("mine", "no.json", "images")], cfg)
        with self.assertRaisesRegex(ValueError, "'shapes_val' is already registered"):
            register_command_line_datasets([("shapes_val", "a.json", "images")], cfg)
        self.assertEqual(register_command_line_datasets([DatasetSpec("shapes_val")], cfg), [])


if __name__ == "__main__":
    unittest.main()
