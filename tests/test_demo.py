"""
demo.py: trained-model pictures for both meta-architectures, and its error cases.

The models are the quick shapes configs (made small by ``workflow_opts``) with random weights
saved by DetectionCheckpointer (an untrained model scores everything near the prior, so the tests
draw with threshold 0 or pick a threshold from the model's own scores); the images are a tiny
split of the embedded dataset.
"""

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch
from data.coco_fixtures import annotation, coco_json, write_image
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from engine.workflow_helpers import (
    BLENDMASK_CONFIG,
    DEMO,
    TENSORMASK_CONFIG,
    TinySplit,
    load_script,
    register_in_process,
    run_command,
    tail,
    unregister_in_process,
    workflow_cfg,
    workflow_opts,
)
from PIL import Image

from tensormask_proj.data.datasets import DEFAULT_CLASSES

demo = load_script(DEMO, "demo")

_TMP = None
_IMAGES = None  # folder of 3 shapes images
_WEIGHTS = {}  # config path -> saved random-init weights


def setUpModule():
    global _TMP, _IMAGES
    _TMP = tempfile.mkdtemp(prefix="test_demo_")
    split = TinySplit("_test_demo_images", 3, 12, os.path.join(_TMP, "datasets"))
    _IMAGES = register_in_process(split).image_root
    unregister_in_process(split)
    for config in (TENSORMASK_CONFIG, BLENDMASK_CONFIG):
        cfg = workflow_cfg(config)
        torch.manual_seed(0)
        model = build_model(cfg)
        name = os.path.splitext(os.path.basename(config))[0]
        DetectionCheckpointer(model, save_dir=_TMP).save(name)
        _WEIGHTS[config] = os.path.join(_TMP, name + ".pth")


def tearDownModule():
    shutil.rmtree(_TMP, ignore_errors=True)


def _run_main(*argv):
    """demo.main in this process; returns (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = demo.main(list(argv))
    return status, err.getvalue()


def _argv(config, inputs, output, *opts, threshold="0.0"):
    argv = ["--config-file", config, "--input"] + list(inputs) + ["--output", output]
    argv += ["--confidence-threshold", threshold]
    return argv + ["--opts"] + workflow_opts(config) + list(opts)


def _images():
    return sorted(os.path.join(_IMAGES, n) for n in os.listdir(_IMAGES))


class TestDemoWritesPictures(unittest.TestCase):
    def _assert_pictures(self, output, inputs, drawn=None):
        """One PNG per input; ``drawn`` (default: all) must show instances drawn on them."""
        drawn = inputs if drawn is None else drawn
        self.assertEqual(
            sorted(os.listdir(output)),
            sorted(os.path.splitext(os.path.basename(p))[0] + ".png" for p in inputs),
        )
        for path in inputs:
            source = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
            picture = Image.open(os.path.join(output, os.path.basename(path)[:-4] + ".png"))
            self.assertEqual(picture.format, "PNG")
            picture = np.asarray(picture.convert("RGB"), dtype=np.int16)
            self.assertEqual(picture.shape, source.shape)
            # Masks/boxes/labels are drawn on top of the image: a good part of it changed, yet
            # it is still the same picture underneath (JPEG input vs lossless PNG output).
            changed = (np.abs(picture - source).max(axis=2) > 40).mean()
            if path in drawn:
                self.assertGreater(changed, 0.02, path)
            self.assertLess(changed, 0.9, path)

    def test_command_line_tensormask_folder(self):
        output = os.path.join(_TMP, "vis_tensormask")
        weights = _WEIGHTS[TENSORMASK_CONFIG]
        run = run_command(
            [sys.executable, DEMO]
            + _argv(TENSORMASK_CONFIG, [_IMAGES], output, "MODEL.WEIGHTS", weights)
        )
        self.assertEqual(run.returncode, 0, tail(run.stdout))
        self._assert_pictures(output, _images())
        # One line per image: instance count and the class names of the shapes metadata.
        lines = re.findall(r"(\d+) instances: (\w+) (\d\.\d\d)", run.stdout)
        self.assertEqual(len(lines), 3, tail(run.stdout))
        for count, label, score in lines:
            # At most TEST.DETECTIONS_PER_IMAGE of workflow_opts (20); NMS may leave fewer: on
            # these 160 px images the coarsest windows (up to 512 px) all clip to the image.
            self.assertTrue(1 <= int(count) <= 20, count)
            self.assertIn(label, DEFAULT_CLASSES)

    def test_blendmask_files_and_globs_with_threshold(self):
        # Threshold halfway down the model's own scores for the first image: exactly the
        # instances scoring at least that much are drawn. The first image is the one on which
        # the random model keeps the most detections (how many of its random boxes survive
        # post-processing depends on the image).
        opts = ["MODEL.WEIGHTS", _WEIGHTS[BLENDMASK_CONFIG]]
        predictor = demo.Predictor(workflow_cfg(BLENDMASK_CONFIG, *opts))
        scores_of = {path: predictor(demo.read_image(path, "BGR")).scores for path in _images()}
        first = max(scores_of, key=lambda path: len(scores_of[path]))
        scores = scores_of[first]
        self.assertGreater(len(scores), 3)
        threshold = float(scores.sort(descending=True).values[len(scores) // 2])
        expected = int((scores >= threshold).sum())

        output = os.path.join(_TMP, "vis_blendmask")
        inputs = [first, os.path.join(_IMAGES, "*.jpg")]  # the first one twice: drawn once
        argv = _argv(BLENDMASK_CONFIG, inputs, output, *opts, threshold=repr(threshold))
        with self.assertLogs("tensormask_proj.demo", "INFO") as logs:
            status, err = _run_main(*argv)
        self.assertEqual(status, 0, err)
        # (The threshold comes from the first image: the others may have nothing above it.)
        self._assert_pictures(output, _images(), drawn=[first])
        first_line = [line for line in logs.output if first + ":" in line]
        self.assertEqual(len(first_line), 1)
        self.assertIn(f": {expected} instances:", first_line[0])

    def test_draw_predictions_marks_mask_box_and_label_only(self):
        image = np.full((120, 160, 3), 128, dtype=np.uint8)
        instances = Instances((120, 160))
        instances.pred_boxes = Boxes(torch.tensor([[40.0, 30.0, 120.0, 90.0]]))
        instances.scores = torch.tensor([0.9])
        instances.pred_classes = torch.tensor([2])
        masks = torch.zeros(1, 120, 160, dtype=torch.bool)
        masks[0, 45:75, 60:100] = True
        instances.pred_masks = masks
        metadata = MetadataCatalog.get("shapes_val")
        picture = demo.draw_predictions(image, instances, metadata).astype(np.int16)
        self.assertEqual(picture.shape, image.shape)
        diff = np.abs(picture - 128).max(axis=2)
        self.assertGreater(diff[50:70, 65:95].mean(), 20)  # mask interior is tinted
        self.assertGreater(diff[30:90, 40].max(), 20)  # box's left edge is drawn
        self.assertEqual(diff[100:, :30].max(), 0)  # far from the instance: untouched
        self.assertEqual(demo.describe(instances, metadata), "1 instances: ring 0.90")


class TestDemoErrors(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="demo_errors_", dir=_TMP)
        self.output = os.path.join(self.dir, "vis")
        self.weights = ["MODEL.WEIGHTS", _WEIGHTS[TENSORMASK_CONFIG]]

    def _fails(self, argv, *fragments):
        status, err = _run_main(*argv)
        self.assertEqual(status, 2, err)
        for fragment in fragments:
            self.assertIn(fragment, err)
        self.assertFalse(os.path.exists(self.output), "nothing may be written on error")
        return err

    def test_missing_weights_file(self):
        missing = os.path.join(self.dir, "model_final.pth")
        argv = _argv(TENSORMASK_CONFIG, [_IMAGES], self.output, "MODEL.WEIGHTS", missing)
        self._fails(argv, f"weights file not found: {missing}")

    def test_no_weights(self):
        self._fails(_argv(TENSORMASK_CONFIG, [_IMAGES], self.output), "MODEL.WEIGHTS is empty")

    def test_damaged_weights_file(self):
        damaged = os.path.join(self.dir, "model.pth")
        with open(_WEIGHTS[TENSORMASK_CONFIG], "rb") as f:
            data = f.read(4096)
        with open(damaged, "wb") as f:
            f.write(data)
        argv = _argv(TENSORMASK_CONFIG, [_IMAGES], self.output, "MODEL.WEIGHTS", damaged)
        self._fails(argv, f"Cannot read checkpoint {damaged}")

    def test_unreadable_images_are_listed_and_nothing_is_written(self):
        folder = os.path.join(self.dir, "images")
        shutil.copytree(_IMAGES, folder)
        truncated, garbage = os.path.join(folder, "bad_cut.jpg"), os.path.join(folder, "bad.png")
        with open(_images()[0], "rb") as f:
            head = f.read(2000)
        with open(truncated, "wb") as f:
            f.write(head)
        with open(garbage, "w") as f:
            f.write("not an image")
        argv = _argv(TENSORMASK_CONFIG, [folder], self.output, *self.weights)
        err = self._fails(argv, "2 of 5 input images cannot be read", truncated, garbage)
        self.assertIn("truncated", err)

    def test_empty_folder_glob_without_match_and_missing_file(self):
        empty = os.path.join(self.dir, "empty")
        os.makedirs(empty)
        with open(os.path.join(empty, "notes.txt"), "w") as f:
            f.write("not an image either")
        self._fails(
            _argv(TENSORMASK_CONFIG, [empty], self.output, *self.weights),
            f"folder {empty} holds no images",
        )
        pattern = os.path.join(self.dir, "*.jpg")
        self._fails(
            _argv(TENSORMASK_CONFIG, [pattern], self.output, *self.weights),
            f"no file matches {pattern}",
        )
        missing = os.path.join(self.dir, "photo.jpg")
        self._fails(
            _argv(TENSORMASK_CONFIG, [missing], self.output, *self.weights),
            f"no such file or folder: {missing}",
        )

    def test_two_inputs_with_the_same_output_name(self):
        other = os.path.join(self.dir, "other")
        os.makedirs(other)
        clash = os.path.join(other, os.path.basename(_images()[0]))
        shutil.copy(_images()[0], clash)
        argv = _argv(TENSORMASK_CONFIG, [_IMAGES, clash], self.output, *self.weights)
        self._fails(argv, clash, "would all be written to")

    def test_png_written_atomically(self):
        os.makedirs(self.output)
        path = os.path.join(self.output, "picture.png")
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        with mock.patch("os.replace", side_effect=OSError("killed")):
            with self.assertRaises(OSError):
                demo.write_png_atomically(path, image)
        self.assertEqual(os.listdir(self.output), [])  # neither the PNG nor a temporary file
        demo.write_png_atomically(path, image)
        self.assertEqual(os.listdir(self.output), ["picture.png"])
        self.assertEqual(np.asarray(Image.open(path)).shape, (8, 8, 3))


class TestDemoOwnDataset(unittest.TestCase):
    """--dataset NAME JSON IMAGE_DIR: class names from the json (the last --dataset's, whatever
    the config's DATASETS.TEST); a class count that differs from the model's is an error."""

    NAME = "_test_demo_own"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="demo_own_", dir=_TMP)
        self.images = os.path.join(self.dir, "images")
        os.makedirs(self.images)
        images = [write_image(self.images, n, "rgb", 96, 128) for n in ("a.jpg", "b.jpg")]
        anns = [annotation(1), annotation(2, category_id=3)]
        self.json = coco_json(os.path.join(self.dir, "instances.json"), images, anns)
        self.output = os.path.join(self.dir, "vis")
        self.addCleanup(self._unregister)

    def _unregister(self):
        if self.NAME in DatasetCatalog.list():
            DatasetCatalog.remove(self.NAME)
            MetadataCatalog.remove(self.NAME)

    def _argv(self, *opts):
        dataset = ["--dataset", self.NAME, self.json, self.images]
        return dataset + _argv(TENSORMASK_CONFIG, [self.images], self.output, *opts)

    def test_class_names_from_the_dataset(self):
        cfg = workflow_cfg(TENSORMASK_CONFIG, "MODEL.TENSOR_MASK.NUM_CLASSES", "2")
        torch.manual_seed(0)
        DetectionCheckpointer(build_model(cfg), save_dir=self.dir).save("two_classes")
        weights = os.path.join(self.dir, "two_classes.pth")
        argv = self._argv("MODEL.TENSOR_MASK.NUM_CLASSES", "2", "MODEL.WEIGHTS", weights)
        with self.assertLogs("tensormask_proj.demo", "INFO") as logs:
            status, err = _run_main(*argv)
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(os.listdir(self.output)), ["a.png", "b.png"])
        labels = re.findall(r"instances: (\w+) \d\.\d\d", "\n".join(logs.output))
        self.assertEqual(len(labels), 2)
        self.assertLessEqual(set(labels), {"blob", "bar"})

    def test_class_count_differs_from_the_model(self):
        status, err = _run_main(*self._argv("MODEL.WEIGHTS", _WEIGHTS[TENSORMASK_CONFIG]))
        self.assertEqual(status, 2, err)
        self.assertIn(f"dataset '{self.NAME}' has 2 classes", err)
        self.assertIn("MODEL.TENSOR_MASK.NUM_CLASSES = 6", err)
        self.assertFalse(os.path.exists(self.output))

    def test_unknown_registered_name(self):
        argv = ["--dataset", "shapes_vall"]
        argv += _argv(TENSORMASK_CONFIG, [self.images], self.output, *self._weights())
        status, err = _run_main(*argv)
        self.assertEqual(status, 2, err)
        self.assertIn("demo.py: error: --dataset shapes_vall: no dataset named 'shapes_vall'", err)
        self.assertFalse(os.path.exists(self.output))

    def _weights(self):
        return ["MODEL.WEIGHTS", _WEIGHTS[TENSORMASK_CONFIG]]


if __name__ == "__main__":
    unittest.main()
