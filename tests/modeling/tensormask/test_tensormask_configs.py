"""Every TensorMask config file loads and builds on the CPU; the config keys and defaults."""

import glob
import os
import unittest

from detectron2.config import get_cfg
from project_testing import assert_every_config_builds

from tensormask_proj.config import add_tensormask_config

from .tensormask_testing import CONFIG_DIR, regular_and_empty_batch, tensormask_cfg

# The microcontroller configs have 4 classes, fewer than the classes of regular_and_empty_batch
# (0, 3, 5): tests/data/test_microcontroller.py builds and trains them on a batch of their own.
CONFIG_FILES = sorted(
    glob.glob(os.path.join(CONFIG_DIR, "TensorMask", "**", "*.yaml"), recursive=True)
    + [
        f
        for f in glob.glob(os.path.join(CONFIG_DIR, "quick_schedules", "tensormask_*.yaml"))
        if not f.endswith("_microcontroller.yaml")
    ]
)

OFFICIAL_DEFAULTS = {
    "IN_FEATURES": ["p2", "p3", "p4", "p5", "p6", "p7"],
    "NUM_CONVS": 4,
    "NUM_CLASSES": 80,
    "CLS_CHANNELS": 256,
    "SCORE_THRESH_TEST": 0.05,
    "TOPK_CANDIDATES_TEST": 6000,
    "NMS_THRESH_TEST": 0.5,
    "BBOX_CHANNELS": 128,
    "BBOX_REG_WEIGHTS": (1.5, 1.5, 0.75, 0.75),
    "FOCAL_LOSS_GAMMA": 3.0,
    "FOCAL_LOSS_ALPHA": 0.3,
    "MASK_CHANNELS": 128,
    "MASK_LOSS_WEIGHT": 2.0,
    "POSITIVE_WEIGHT": 1.5,
    "ALIGNED_ON": False,
    "BIPYRAMID_ON": False,
}
VARIANT_DEFAULTS = {
    "UPSCALE_FACTOR": 1.0,
    "UPSCALE_MODE": "bilinear",
    "BOX_HEAD_ON": True,
    "NMS_BOXES": "regressed",
    "SPARSE_WINDOWS": True,
    "HEAD_NORM": "",
}


class TestConfigKeys(unittest.TestCase):
    def test_defaults(self):
        cfg = add_tensormask_config(get_cfg())
        self.assertEqual(dict(cfg.MODEL.TENSOR_MASK), {**OFFICIAL_DEFAULTS, **VARIANT_DEFAULTS})

    def test_global_defaults_untouched(self):
        add_tensormask_config(get_cfg())
        self.assertNotIn("TENSOR_MASK", get_cfg().MODEL)


class TestConfigFiles(unittest.TestCase):
    def test_expected_files_exist(self):
        names = {os.path.relpath(f, CONFIG_DIR) for f in CONFIG_FILES}
        for required in [
            "TensorMask/Base-TensorMask.yaml",
            "TensorMask/tensormask_R_50_FPN_1x.yaml",
            "TensorMask/tensormask_R_50_FPN_6x.yaml",
            "TensorMask/ablations/tab1_simple_natural.yaml",
            "TensorMask/ablations/tab2b_upscale_nearest_lambda5.yaml",
            "TensorMask/ablations/tab5_mask_only.yaml",
            "quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml",
        ]:
            self.assertIn(required, names)
        self.assertGreaterEqual(len(names), 27)

    def test_every_file_loads_and_builds(self):
        assert_every_config_builds(self, CONFIG_FILES, "TensorMask", regular_and_empty_batch())

    def test_official_values(self):
        cfg = tensormask_cfg(os.path.join(CONFIG_DIR, "TensorMask", "tensormask_R_50_FPN_6x.yaml"))
        self.assertEqual(cfg.MODEL.FPN.FUSE_TYPE, "avg")
        self.assertEqual(cfg.MODEL.BACKBONE.NAME, "build_retinanet_resnet_fpn_backbone")
        self.assertEqual(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0], [44, 60])
        self.assertTrue(cfg.MODEL.TENSOR_MASK.ALIGNED_ON and cfg.MODEL.TENSOR_MASK.BIPYRAMID_ON)
        self.assertEqual(cfg.SOLVER.MAX_ITER, 540000)
        self.assertEqual(cfg.INPUT.MIN_SIZE_TRAIN, (640, 800))
        self.assertEqual(cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING, "range")

    def test_ablation_rows_select_the_paper_variants(self):
        def head(name):
            cfg = tensormask_cfg(os.path.join(CONFIG_DIR, "TensorMask", "ablations", name))
            t = cfg.MODEL.TENSOR_MASK
            return (
                t.ALIGNED_ON,
                t.BIPYRAMID_ON,
                t.UPSCALE_FACTOR,
                t.UPSCALE_MODE,
                t.BOX_HEAD_ON,
                t.NMS_BOXES,
                len(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0]),
            )

        rows = {
            "tab1_simple_natural.yaml": (False, False, 1.0, "bilinear", True, "regressed", 1),
            "tab1_simple_aligned.yaml": (True, False, 1.0, "bilinear", True, "regressed", 1),
            "tab2a_upscale_natural_lambda3.yaml": (
                False,
                False,
                3.0,
                "bilinear",
                True,
                "regressed",
                1,
            ),
            "tab2b_upscale_nearest_lambda1p5.yaml": (
                True,
                False,
                1.5,
                "nearest",
                True,
                "regressed",
                1,
            ),
            "tab2c_tensor_bipyramid.yaml": (True, True, 1.0, "bilinear", True, "regressed", 1),
            "tab2d_bipyramid_15x15_11x11.yaml": (True, True, 1.0, "bilinear", True, "regressed", 2),
            "tab5_box_head_nms_mask_bb.yaml": (True, True, 1.0, "bilinear", True, "mask", 2),
            "tab5_mask_only.yaml": (True, True, 1.0, "bilinear", False, "mask", 2),
        }
        for name, expected in rows.items():
            self.assertEqual(head(name), expected, name)


if __name__ == "__main__":
    unittest.main()
