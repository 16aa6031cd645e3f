"""
Sizes per pyramid level fitted to a dataset (tensormask_proj/engine/size_fitting.py), on
crafted dataset dicts whose object sizes are known:

* the training resize and padding are detectron2's (ResizeShortestEdge, FPN divisibility);
* the positive-window counts are the model's assignment (``assign_windows``) summed;
* TensorMask's fit reaches every object, uses the finest level, keeps the level ratios, gives
  small windows to small objects and large ones to large objects, and keeps the quick config's
  windows on the shapes data they were tuned on;
* FCOS's fit keeps AdelaiDet's boundaries when the finest level already gets its share, and
  raises them for large objects;
* the training warning names the counts; ``train_net.py`` applies MODEL.FIT_SIZES_TO_DATA and
  saves the fitted sizes in OUTPUT_DIR/config.yaml.
"""

import os
import shutil
import tempfile
import unittest

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.transforms import ResizeShortestEdge
from detectron2.modeling import build_model
from project_testing import CONFIG_DIR, project_cfg

from tensormask_proj.engine import (
    count_positive_windows,
    fit_sizes_of_interest,
    fit_window_sizes,
    warn_unassigned_objects,
)
from tensormask_proj.engine.size_fitting import scaled_images
from tensormask_proj.modeling.tensormask import assign_windows

from .workflow_helpers import (
    BLENDMASK_CONFIG,
    TENSORMASK_CONFIG,
    TRAIN_NET,
    TinySplit,
    load_script,
    register_in_process,
    unregister_in_process,
)

MICROCONTROLLER_CONFIG = os.path.join(
    CONFIG_DIR, "quick_schedules", "tensormask_R_18_GN_FPN_microcontroller.yaml"
)


def _dicts(side: float, count: int = 12, height: int = 192, width: int = 256, per_image: int = 2):
    """Dataset dicts of ``count`` images with ``per_image`` square objects of ``side`` px."""
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(count):
        anns = []
        for _ in range(per_image):
            x = rng.uniform(0, width - side)
            y = rng.uniform(0, height - side)
            anns.append({"bbox": [x, y, side, side], "iscrowd": 0, "category_id": 0})
        dicts.append({"image_id": i, "height": height, "width": width, "annotations": anns})
    return dicts


class TestScaledImages(unittest.TestCase):
    def test_resize_as_detectron2(self):
        for sampling, sizes, max_size, (h, w) in (
            ("choice", (192,), 320, (600, 800)),
            ("choice", (160, 224), 256, (480, 1200)),  # the long side caps the second
            ("range", (128, 256), 1000, (300, 500)),
        ):
            cfg = project_cfg(TENSORMASK_CONFIG, [
                "INPUT.MIN_SIZE_TRAIN", sizes, "INPUT.MAX_SIZE_TRAIN", max_size,
                "INPUT.MIN_SIZE_TRAIN_SAMPLING", sampling,
            ])  # fmt: skip
            d = {"height": h, "width": w, "annotations": [{"bbox": [10, 20, 30, 40]}]}
            images = scaled_images(cfg, [d])
            shorts = sizes if sampling == "choice" else (min(sizes), max(sizes))
            expected = []
            for short in shorts:
                new_h, new_w = ResizeShortestEdge.get_output_shape(h, w, short, max_size)
                expected.append((int(np.ceil(new_h / 32) * 32), int(np.ceil(new_w / 32) * 32)))
            self.assertEqual(sorted(i.padded_size for i in images), sorted(set(expected)))
            for image in images:
                scale = image.boxes[0, 2] / 40.0
                torch.testing.assert_close(image.boxes[0], torch.tensor([10, 20, 40, 60.0]) * scale)

    def test_crowd_and_empty_images_left_out(self):
        cfg = project_cfg(TENSORMASK_CONFIG)
        dicts = _dicts(30, count=2)
        dicts[0]["annotations"] = [dict(a, iscrowd=1) for a in dicts[0]["annotations"]]
        dicts.append({"height": 192, "width": 256, "annotations": []})
        images = scaled_images(cfg, dicts)
        self.assertEqual(len(images), 1)
        self.assertEqual(len(images[0].boxes), 2)


class TestTensorMaskWindows(unittest.TestCase):
    def test_counts_are_the_assignment(self):
        cfg = project_cfg(TENSORMASK_CONFIG)
        images = scaled_images(cfg, _dicts(40, count=3))
        sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
        by_level, per_object = count_positive_windows(cfg, images, sizes)
        strides = [4, 8, 16, 32, 64]  # P2..P6
        total, objects = 0, []
        for image in images:
            h, w = image.padded_size
            grids = [(-(-h // s), -(-w // s)) for s in strides]  # (ceil: stride-2 convolutions)
            targets = assign_windows(
                image.boxes,
                torch.zeros(len(image.boxes), dtype=torch.int64),
                grids,
                strides,
                sizes,
                6,
                min(sizes[0]) - strides[0],
            )
            total += len(targets.pos_indices)
            objects += torch.bincount(targets.pos_gt, minlength=len(image.boxes)).tolist()
        self.assertGreater(total, 0)
        self.assertEqual(int(by_level.sum()), total)
        self.assertEqual(per_object.tolist(), objects)
        self.assertEqual(by_level.shape, (5, 2))

    def test_fit_follows_object_size(self):
        cfg = project_cfg(TENSORMASK_CONFIG)
        fits = {side: fit_window_sizes(cfg, _dicts(side)) for side in (10, 40, 80)}
        for side, fit in fits.items():
            with self.subTest(side=side):
                self.assertEqual(fit.unassigned, 0)
                self.assertGreater(int(fit.by_level[0].sum()), 0, "the finest level is used")
                # Every finest window is a whole number of 4 px cells: the model accepts them.
                self.assertEqual([s % 4 for s in fit.sizes[0]], [0, 0])
                # The quick config's ratios: 1.5 inside a level, x2 per level.
                for level, nxt in zip(fit.sizes, fit.sizes[1:]):
                    self.assertAlmostEqual(level[1] / level[0], 1.5, delta=0.1)
                    self.assertAlmostEqual(nxt[0] / level[0], 2.0, delta=0.1)
        finest = {side: fit.sizes[0][0] for side, fit in fits.items()}
        self.assertLess(finest[10], finest[40])
        self.assertLess(finest[40], finest[80])
        self.assertLessEqual(finest[10], 16)

    def test_config_windows_that_leave_objects_out_are_refitted(self):
        # 180 px objects on 192 px images: the quick config's P2-P6 windows (32..768 px) reach
        # them; windows 8x smaller (4..96 px) do not, and the fit restores the reach.
        small = [[4, 6], [8, 12], [16, 24], [32, 48], [64, 96]]
        cfg = project_cfg(TENSORMASK_CONFIG, ["MODEL.ANCHOR_GENERATOR.SIZES", small])
        dicts = _dicts(180, per_image=1)
        images = scaled_images(cfg, dicts)
        _, per_object = count_positive_windows(cfg, images, small)
        self.assertEqual(int((per_object == 0).sum()), len(per_object))
        fit = fit_window_sizes(cfg, dicts)
        self.assertEqual(fit.unassigned, 0)
        with self.assertLogs("tensormask_proj.engine.size_fitting", "WARNING") as logs:
            self.assertEqual(warn_unassigned_objects(cfg, dicts), len(per_object))
        self.assertIn(f"{len(per_object)} of {len(per_object)} objects", logs.output[0])
        self.assertIn("tools/fit_sizes.py", logs.output[0])
        self.assertIn("MODEL.FIT_SIZES_TO_DATA True", logs.output[0])

    def test_quick_config_keeps_its_tuned_windows_on_shapes(self):
        cfg = project_cfg(TENSORMASK_CONFIG)
        fit = fit_window_sizes(cfg, DatasetCatalog.get("shapes_train"))
        self.assertEqual(fit.sizes, [list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES])

    def test_fitted_windows_build_the_model_on_the_real_photos(self):
        # The photos' boards fit best at 44/66 px, which is not whole 4 px cells (66 = 16.5 x 4):
        # the fit keeps to sizes the mask heads accept, and the model builds with them.
        cfg = project_cfg(MICROCONTROLLER_CONFIG)
        fit = fit_window_sizes(cfg, DatasetCatalog.get("microcontroller_train"))
        self.assertEqual(fit.unassigned, 0)
        self.assertEqual([s % 4 for s in fit.sizes[0]], [0, 0])
        fitted = project_cfg(MICROCONTROLLER_CONFIG, ["MODEL.ANCHOR_GENERATOR.SIZES", fit.sizes])
        build_model(fitted)

    def test_fit_keeps_to_sizes_the_model_accepts(self):
        # Ratio 45.1 / 32 inside a level: most scalings round to sizes that do not double per
        # level or are not whole 4 px cells; the fit keeps one that builds.
        odd = [[32, 45.1], [64, 90.2], [128, 180.4], [256, 360.8], [512, 721.6]]
        cfg = project_cfg(TENSORMASK_CONFIG, ["MODEL.ANCHOR_GENERATOR.SIZES", odd])
        fit = fit_window_sizes(cfg, _dicts(40))
        self.assertEqual(fit.unassigned, 0)
        self.assertEqual([s % 4 for s in fit.sizes[0]], [0, 0])
        build_model(project_cfg(TENSORMASK_CONFIG, ["MODEL.ANCHOR_GENERATOR.SIZES", fit.sizes]))

    def test_no_objects(self):
        cfg = project_cfg(TENSORMASK_CONFIG)
        with self.assertRaisesRegex(ValueError, "no object to fit"):
            fit_window_sizes(cfg, [{"height": 10, "width": 10, "annotations": []}])


class TestFCOSSizesOfInterest(unittest.TestCase):
    def test_adelaidet_boundaries_kept_for_small_objects(self):
        cfg = project_cfg(BLENDMASK_CONFIG)  # strides 8, 16, 32; [64, 128]
        fit = fit_sizes_of_interest(cfg, _dicts(30))
        self.assertEqual(fit.sizes_of_interest, [64, 128])
        self.assertEqual(fit.objects_per_level, [24, 0, 0])

    def test_large_objects_raise_them_so_that_the_finest_level_is_used(self):
        cfg = project_cfg(BLENDMASK_CONFIG, ["INPUT.MIN_SIZE_TRAIN", "(600,)",
                                             "INPUT.MAX_SIZE_TRAIN", 1000])  # fmt: skip
        dicts = _dicts(60, count=4) + _dicts(160, count=4) + _dicts(190, count=4)
        fit = fit_sizes_of_interest(cfg, dicts)
        self.assertGreaterEqual(fit.objects_per_level[0], sum(fit.objects_per_level) / 3)
        self.assertEqual(fit.sizes_of_interest[1], 2 * fit.sizes_of_interest[0])


class TestTrainNetFitsSizes(unittest.TestCase):
    def test_fitted_sizes_are_used_and_saved(self):
        tmp = tempfile.mkdtemp(prefix="test_size_fitting_")
        self.addCleanup(shutil.rmtree, tmp, True)
        split = TinySplit("_test_fit_train4", 4, 11, os.path.join(tmp, "datasets"))
        register_in_process(split)
        self.addCleanup(unregister_in_process, split)
        train_net = load_script(TRAIN_NET, "train_net")
        args = train_net.default_argument_parser().parse_args([
            "--config-file", TENSORMASK_CONFIG, "DATASETS.TRAIN", f"('{split.name}',)",
            "DATASETS.TEST", "()", "OUTPUT_DIR", tmp, "MODEL.FIT_SIZES_TO_DATA", "True",
            "MODEL.ANCHOR_GENERATOR.SIZES", "[[4, 6], [8, 12], [16, 24], [32, 48], [64, 96]]",
        ])  # fmt: skip
        with self.assertLogs("tensormask_proj.train_net", "INFO") as logs:
            cfg = train_net.setup(args)
        expected = fit_window_sizes(cfg, DatasetCatalog.get(split.name)).sizes
        self.assertEqual([list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES], expected)
        self.assertNotEqual(expected[0], [4, 6])
        self.assertTrue(any("MODEL.FIT_SIZES_TO_DATA: fitted to" in line for line in logs.output))
        with open(os.path.join(tmp, "config.yaml")) as f:
            saved = f.read()
        self.assertIn(f"- {expected[0][0]}", saved)


if __name__ == "__main__":
    unittest.main()
