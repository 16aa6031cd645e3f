"""BlendMask config keys, every BlendMask YAML, and AdelaiDet state-dict compatibility."""

import glob
import json
import os
import unittest

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from project_testing import assert_every_config_builds

from tensormask_proj.config import add_blendmask_config

from .blendmask_testing import CONFIG_DIR, FIXTURE_DIR, blendmask_cfg, regular_and_empty_batch

# Spec section 2: AdelaiDet's defaults.
EXPECTED_DEFAULTS = {
    "FCOS": {
        "NUM_CLASSES": 80, "IN_FEATURES": ["p3", "p4", "p5", "p6", "p7"],
        "FPN_STRIDES": [8, 16, 32, 64, 128], "PRIOR_PROB": 0.01, "INFERENCE_TH_TRAIN": 0.05,
        "INFERENCE_TH_TEST": 0.05, "NMS_TH": 0.6, "PRE_NMS_TOPK_TRAIN": 1000,
        "PRE_NMS_TOPK_TEST": 1000, "POST_NMS_TOPK_TRAIN": 100, "POST_NMS_TOPK_TEST": 100,
        "TOP_LEVELS": 2, "NORM": "GN", "USE_SCALE": True, "BOX_QUALITY": "ctrness",
        "THRESH_WITH_CTR": False, "LOSS_ALPHA": 0.25, "LOSS_GAMMA": 2.0,
        "LOSS_NORMALIZER_CLS": "fg", "LOSS_WEIGHT_CLS": 1.0,
        "SIZES_OF_INTEREST": [64, 128, 256, 512],
        "USE_RELU": True, "USE_DEFORMABLE": False, "NUM_CLS_CONVS": 4, "NUM_BOX_CONVS": 4,
        "NUM_SHARE_CONVS": 0, "CENTER_SAMPLE": True, "POS_RADIUS": 1.5, "LOC_LOSS_TYPE": "giou",
        "YIELD_PROPOSAL": False, "YIELD_BOX_FEATURES": False,
        # This project's key (not AdelaiDet's); False keeps AdelaiDet's behaviour.
        "ONE_CLASS_PER_LOCATION": False,
    },
    "BASIS_MODULE": {
        "NAME": "ProtoNet", "NUM_BASES": 4, "LOSS_ON": False, "ANN_SET": "coco", "CONVS_DIM": 128,
        "IN_FEATURES": ["p3", "p4", "p5"], "NORM": "SyncBN", "NUM_CONVS": 3, "COMMON_STRIDE": 8,
        "NUM_CLASSES": 80, "LOSS_WEIGHT": 0.3,
        # This project's key (not AdelaiDet's); "" keeps AdelaiDet's behaviour.
        "SEMANTIC_IN_FEATURE": "",
    },
    "BLENDMASK": {
        "ATTN_SIZE": 14, "TOP_INTERP": "bilinear", "BOTTOM_RESOLUTION": 56,
        "POOLER_TYPE": "ROIAlignV2", "POOLER_SAMPLING_RATIO": 1, "POOLER_SCALES": (0.25,),
        "INSTANCE_LOSS_WEIGHT": 1.0, "VISUALIZE": False,
        # This project's key (not AdelaiDet's); "gt" keeps AdelaiDet's behaviour.
        "TRAIN_BOXES": "gt",
        # This project's key (not AdelaiDet's); False keeps AdelaiDet's scores.
        "RESCORE_BY_MASKNESS": False,
        # This project's key (not AdelaiDet's); 1 crops with the box itself, as AdelaiDet.
        "CROP_SCALE": 1.0,
    },
}  # fmt: skip

# (config file, fixture listing) of the AdelaiDet configs with a recorded state dict.
STATE_DICT_LISTINGS = [
    ("R_50_1x.yaml", "blendmask_state_dict_R50_1x.json"),
    ("R_50_3x.yaml", "blendmask_state_dict_R_50_3x.json"),
    ("550_R_50_3x.yaml", "blendmask_state_dict_550_R_50_3x.json"),
    ("RT_R_50_4x_syncbn_shtw.yaml", "blendmask_state_dict_RT_R_50_4x_syncbn_shtw.json"),
    (
        "RT_R_50_4x_bn-head_syncbn_shtw.yaml",
        "blendmask_state_dict_RT_R_50_4x_bn-head_syncbn_shtw.json",
    ),
]


def _blendmask_config_files():
    files = sorted(glob.glob(os.path.join(CONFIG_DIR, "BlendMask", "*.yaml")))
    files += sorted(glob.glob(os.path.join(CONFIG_DIR, "quick_schedules", "blendmask_*.yaml")))
    # The microcontroller config has 4 classes, fewer than regular_and_empty_batch's (0, 3, 5):
    # tests/data/test_microcontroller.py builds and trains it on a batch of its own.
    return [f for f in files if not f.endswith("_microcontroller.yaml")]


class TestConfigKeys(unittest.TestCase):
    def test_defaults(self):
        cfg = add_blendmask_config(get_cfg())
        for section, expected in EXPECTED_DEFAULTS.items():
            node = cfg.MODEL[section]
            self.assertEqual(set(node.keys()), set(expected), section)
            for key, value in expected.items():
                self.assertEqual(node[key], value, f"MODEL.{section}.{key}")

    def test_detectron2_defaults_untouched(self):
        add_blendmask_config(get_cfg())
        fresh = get_cfg()
        for section in EXPECTED_DEFAULTS:
            self.assertNotIn(section, fresh.MODEL)


class TestConfigFiles(unittest.TestCase):
    def test_every_config_builds(self):
        files = _blendmask_config_files()
        names = {os.path.basename(f) for f in files}
        for required in ("Base-BlendMask.yaml", "R_50_1x.yaml", "R_50_3x.yaml",
                         "550_R_50_3x.yaml", "RT_R_50_4x_syncbn_shtw.yaml"):  # fmt: skip
            self.assertIn(required, names)
        self.assertTrue(any(n.startswith("blendmask_") for n in names))
        assert_every_config_builds(self, files, "BlendMask", regular_and_empty_batch())

    def test_state_dict_matches_adelaidet(self):
        for config_name, listing in STATE_DICT_LISTINGS:
            with self.subTest(config=config_name):
                with open(os.path.join(FIXTURE_DIR, listing)) as f:
                    reference = json.load(f)
                cfg_file = os.path.join(CONFIG_DIR, "BlendMask", config_name)
                model = build_model(blendmask_cfg(cfg_file))
                params = dict(model.named_parameters())
                mine = [
                    {
                        "name": name,
                        "shape": list(t.shape),
                        "dtype": str(t.dtype).replace("torch.", ""),
                        "kind": "parameter" if name in params else "buffer",
                    }
                    for name, t in model.state_dict().items()
                ]
                # Same names, shapes, dtypes and parameter/buffer kinds, in the same order.
                self.assertEqual(mine, reference["entries"])
                self.assertEqual(len(mine), reference["num_entries"])
                num_params = sum(p.numel() for p in params.values())
                self.assertEqual(num_params, reference["num_parameters"])

    def test_trainable_parameters_after_freeze(self):
        # R_50_1x freezes the stem and res2 (FREEZE_AT=2).
        with open(os.path.join(FIXTURE_DIR, "blendmask_state_dict_R50_1x.json")) as f:
            reference = json.load(f)
        model = build_model(blendmask_cfg(os.path.join(CONFIG_DIR, "BlendMask", "R_50_1x.yaml")))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.assertEqual(trainable, reference["num_trainable_parameters_after_freeze_at_2"])

    def test_invalid_settings_are_refused(self):
        cases = [
            (["MODEL.FCOS.BOX_QUALITY", "centerness"], ValueError, "BOX_QUALITY"),
            (["MODEL.FCOS.NORM", "LN"], ValueError, "MODEL.FCOS.NORM"),
            (["MODEL.FCOS.TOP_LEVELS", 3], ValueError, "TOP_LEVELS"),
            (["MODEL.FCOS.SIZES_OF_INTEREST", [64]], ValueError, "SIZES_OF_INTEREST"),
            (["MODEL.FCOS.FPN_STRIDES", [8, 16, 64]], ValueError, "FPN_STRIDES"),
            (["MODEL.FCOS.LOSS_NORMALIZER_CLS", "none"], ValueError, "LOSS_NORMALIZER_CLS"),
            (["MODEL.FCOS.USE_DEFORMABLE", True], NotImplementedError, "USE_DEFORMABLE"),
            (["MODEL.BASIS_MODULE.COMMON_STRIDE", 4], ValueError, "COMMON_STRIDE"),
            (["MODEL.BASIS_MODULE.SEMANTIC_IN_FEATURE", "p9"], ValueError, "SEMANTIC_IN_FEATURE"),
            (["MODEL.BLENDMASK.POOLER_SCALES", (0.25, 0.125)], ValueError, "POOLER_SCALES"),
            (["MODEL.BLENDMASK.CROP_SCALE", 0.8], ValueError, "MODEL.BLENDMASK.CROP_SCALE"),
            (["MODEL.PANOPTIC_FPN.COMBINE.ENABLED", True], NotImplementedError, "COMBINE"),
            (["MODEL.MASK_ON", False], ValueError, "MASK_ON"),
        ]
        for opts, error, message in cases:
            with self.subTest(opts=opts), self.assertRaisesRegex(error, message):
                build_model(blendmask_cfg(opts=opts))


if __name__ == "__main__":
    unittest.main()
