"""
tools/visualize_data.py with a command-line dataset (the crafted odd dataset of coco_fixtures):
the ground truth drawn on each image as read, and the training mapper's samples.
"""

import os
import unittest

import numpy as np
from detectron2.data.detection_utils import read_image
from engine.workflow_helpers import (
    BLENDMASK_CONFIG,
    REPO_ROOT,
    TENSORMASK_CONFIG,
    load_script,
    workflow_opts,
)
from PIL import Image

from .coco_fixtures import OddDatasetTestCase

TOOL = os.path.join(REPO_ROOT, "tools", "visualize_data.py")
visualize_data = load_script(TOOL, "visualize_data")

NAME = "_test_visualize_own"


class TestVisualizeData(OddDatasetTestCase):
    NAME = NAME

    def run_tool(self, config, source, output, *extra):
        # (The --dataset is what is drawn: the config's DATASETS.TRAIN is shapes_train.)
        argv = ["--config-file", config, "--source", source, "--output", output]
        argv += list(extra) + ["--dataset", NAME, self.json, self.images]
        argv += workflow_opts(config) + ["INPUT.MASK_FORMAT", "bitmask"]
        if config == TENSORMASK_CONFIG:
            return visualize_data.main(argv + ["MODEL.TENSOR_MASK.NUM_CLASSES", "2"])
        num_classes = ["MODEL.FCOS.NUM_CLASSES", "2", "MODEL.BASIS_MODULE.NUM_CLASSES", "2"]
        return visualize_data.main(argv + num_classes)

    def test_annotation(self):
        output = os.path.join(self.tmp, "annotation")
        written = self.run_tool(TENSORMASK_CONFIG, "annotation", output)
        files = ["rgb.jpg", "gray.png", "rgba.png", "rgb16.png", "exif.jpg", "tiny.png"]
        pictures = [f"{i:04d}_{os.path.splitext(f)[0]}.png" for i, f in enumerate(files)]
        self.assertEqual(sorted(os.listdir(output)), pictures)
        self.assertEqual(written, [os.path.join(output, p) for p in pictures])
        for file_name, path in zip(files, written):
            source = read_image(os.path.join(self.images, file_name), format="RGB")
            drawn = np.asarray(Image.open(path).convert("RGB"))
            self.assertEqual(drawn.shape, source.shape, file_name)  # the EXIF image turned too
        # rgb.jpg: its two annotations are drawn (inside the first box the picture changed),
        # far from them it is the image itself.
        source = read_image(os.path.join(self.images, "rgb.jpg"), format="RGB").astype(int)
        drawn = np.asarray(Image.open(written[0]).convert("RGB")).astype(int)
        diff = np.abs(drawn - source).max(axis=2)
        self.assertGreater(diff[9:17, 11:21].mean(), 20)
        self.assertLess(diff[40:, :8].mean(), 10)

    def test_dataloader(self):
        output = os.path.join(self.tmp, "dataloader")
        written = self.run_tool(BLENDMASK_CONFIG, "dataloader", output, "--num-images", "4")
        self.assertEqual(len(written), 4)
        for path in written:
            drawn = Image.open(path)
            # Resized by the training mapper (INPUT.MIN_SIZE_TRAIN 160, MAX_SIZE_TRAIN 200).
            self.assertLessEqual(max(drawn.size), 200)
            self.assertGreater(min(drawn.size), 100)


if __name__ == "__main__":
    unittest.main()
