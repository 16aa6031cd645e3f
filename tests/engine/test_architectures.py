"""
The table of per-architecture facts (tensormask_proj/engine/architectures.py): the lookup and
its error, every key of the table present in the project's config, the class-count keys of
every shipped config (and their values against its training set's classes), and the training
mapper of each architecture.
"""

import glob
import os
import unittest

from detectron2.data import DatasetMapper, MetadataCatalog
from project_testing import CONFIG_DIR

from tensormask_proj import get_project_cfg
from tensormask_proj.data import BlendMaskDatasetMapper
from tensormask_proj.data import dataset_mapper as data_mapper_module
from tensormask_proj.engine import (
    ARCHITECTURES,
    UnknownArchitectureError,
    architecture_of,
    build_train_mapper,
    num_classes_keys,
    setup_cfg,
)
from tensormask_proj.engine.architectures import config_value

from .workflow_helpers import BLENDMASK_CONFIG, TENSORMASK_CONFIG

# The class-count keys each architecture of a shipped config must have (BlendMask: its basis
# module's semantic head too, which every shipped BlendMask config trains).
EXPECTED_CLASS_KEYS = {
    "TensorMask": ["MODEL.TENSOR_MASK.NUM_CLASSES"],
    "BlendMask": ["MODEL.FCOS.NUM_CLASSES", "MODEL.BASIS_MODULE.NUM_CLASSES"],
    "GeneralizedRCNN": ["MODEL.ROI_HEADS.NUM_CLASSES"],
}


def _shipped_configs():
    return sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))


class TestLookup(unittest.TestCase):
    def test_known_by_name_and_by_config(self):
        self.assertEqual(architecture_of("TensorMask").name, "TensorMask")
        cfg = setup_cfg(BLENDMASK_CONFIG)
        self.assertIs(architecture_of(cfg), ARCHITECTURES["BlendMask"])

    def test_unknown_names_the_key_and_the_known_ones(self):
        cfg = get_project_cfg()
        cfg.MODEL.META_ARCHITECTURE = "TensorMsk"
        with self.assertRaises(UnknownArchitectureError) as raised:
            architecture_of(cfg)
        message = str(raised.exception)
        self.assertIn("MODEL.META_ARCHITECTURE is 'TensorMsk'", message)
        self.assertIn("BlendMask, GeneralizedRCNN, RetinaNet, TensorMask", message)
        self.assertIsInstance(raised.exception, ValueError)

    def test_unknown_ok_gives_detectron2s_generic_facts(self):
        generic = architecture_of("PanopticFPN", unknown_ok=True)
        self.assertEqual(generic.name, "PanopticFPN")
        self.assertEqual(generic.class_count_keys(get_project_cfg()), [])
        self.assertIsNone(generic.score_threshold_key)
        self.assertIsNone(generic.fitted_sizes_key)
        self.assertIs(generic.train_mapper, DatasetMapper)

    def test_table_is_read_only(self):
        with self.assertRaises(TypeError):
            ARCHITECTURES["Mine"] = ARCHITECTURES["TensorMask"]
        with self.assertRaises(AttributeError):  # (a frozen dataclass)
            ARCHITECTURES["TensorMask"].score_threshold_key = "MODEL.X"

    def test_every_key_of_the_table_exists_in_the_config(self):
        cfg = get_project_cfg()
        for arch in ARCHITECTURES.values():
            keys = list(arch.num_classes_keys)
            keys += [k for pair in arch.switched_num_classes_keys for k in pair]
            keys += [arch.score_threshold_key, arch.nms_threshold_key, arch.fitted_sizes_key]
            for key in filter(None, keys):
                with self.subTest(architecture=arch.name, key=key):
                    config_value(cfg, key)  # raises KeyError if missing


class TestClassCountKeys(unittest.TestCase):
    def test_every_shipped_config(self):
        configs = _shipped_configs()
        self.assertGreater(len(configs), 30)
        seen = set()
        for path in configs:
            with self.subTest(config=os.path.relpath(path, CONFIG_DIR)):
                cfg = setup_cfg(path)
                arch = architecture_of(cfg)
                seen.add(arch.name)
                keys = arch.class_count_keys(cfg)
                self.assertEqual(keys, EXPECTED_CLASS_KEYS[arch.name])
                self.assertEqual(num_classes_keys(cfg), keys)
                # Each key holds the class count of the config's training set (what
                # check_num_classes demands before training).
                classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes
                self.assertEqual([config_value(cfg, k) for k in keys], [len(classes)] * len(keys))
        self.assertEqual(seen, set(EXPECTED_CLASS_KEYS))

    def test_basis_module_key_only_with_its_loss(self):
        cfg = setup_cfg(BLENDMASK_CONFIG, ["MODEL.BASIS_MODULE.LOSS_ON", "False"])
        self.assertEqual(num_classes_keys(cfg), ["MODEL.FCOS.NUM_CLASSES"])

    def test_unknown_architecture_has_none_to_check(self):
        cfg = setup_cfg(TENSORMASK_CONFIG, ["MODEL.META_ARCHITECTURE", "PanopticFPN"])
        self.assertEqual(num_classes_keys(cfg), [])


class TestTrainMapper(unittest.TestCase):
    def test_blendmask_adds_basis_sem_the_others_use_detectron2s(self):
        blendmask = build_train_mapper(setup_cfg(BLENDMASK_CONFIG))
        self.assertIs(type(blendmask), BlendMaskDatasetMapper)
        self.assertTrue(blendmask.basis_sem_on)
        self.assertIs(type(build_train_mapper(setup_cfg(TENSORMASK_CONFIG))), DatasetMapper)
        baseline = os.path.join(CONFIG_DIR, "Baselines", "mask_rcnn_R_18_GN_FPN_shapes.yaml")
        self.assertIs(type(build_train_mapper(setup_cfg(baseline))), DatasetMapper)

    def test_data_module_name_gives_the_same(self):
        mapper = data_mapper_module.build_train_mapper(setup_cfg(BLENDMASK_CONFIG))
        self.assertIs(type(mapper), BlendMaskDatasetMapper)


if __name__ == "__main__":
    unittest.main()
