"""
setup_cfg (tensormask_proj/engine/setup.py), the config set-up of every entry point: the file
and the overrides applied, a key that does not exist refused with its name, its origin and the
closest key, the demo's score threshold, the datasets replaced, frozen or not.
"""

import os
import shutil
import tempfile
import unittest

from project_testing import CONFIG_DIR

from tensormask_proj.engine import UnknownConfigKeyError, setup_cfg

from .workflow_helpers import BLENDMASK_CONFIG, TENSORMASK_CONFIG

BASELINE_CONFIG = os.path.join(CONFIG_DIR, "Baselines", "mask_rcnn_R_18_GN_FPN_shapes.yaml")


class TestSetupCfg(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="test_setup_cfg_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_file_then_opts_frozen(self):
        cfg = setup_cfg(TENSORMASK_CONFIG, ["SOLVER.MAX_ITER", "7", "MODEL.DEVICE", "cpu"])
        self.assertEqual(cfg.MODEL.META_ARCHITECTURE, "TensorMask")  # from the file
        self.assertEqual(cfg.MODEL.TENSOR_MASK.NUM_CLASSES, 6)  # from the file
        self.assertEqual(cfg.SOLVER.MAX_ITER, 7)
        self.assertTrue(cfg.is_frozen())
        with self.assertRaises(AttributeError):
            cfg.SOLVER.MAX_ITER = 8

    def test_not_frozen_when_asked(self):
        cfg = setup_cfg(TENSORMASK_CONFIG, freeze=False)
        cfg.SOLVER.MAX_ITER = 8
        self.assertEqual(cfg.SOLVER.MAX_ITER, 8)

    def test_unknown_key_in_opts(self):
        with self.assertRaises(UnknownConfigKeyError) as raised:
            setup_cfg(
                TENSORMASK_CONFIG, ["SOLVER.MAX_ITER", "7", "MODEL.TENSOR_MASK.NUM_CLASES", 3]
            )
        self.assertEqual(
            str(raised.exception),
            "Non-existent key: MODEL.TENSOR_MASK.NUM_CLASES (in the KEY VALUE overrides); "
            "did you mean MODEL.TENSOR_MASK.NUM_CLASSES?",
        )
        # What yacs raises for an override (AssertionError) and for a file's key (KeyError).
        self.assertIsInstance(raised.exception, AssertionError)
        self.assertIsInstance(raised.exception, KeyError)

    def test_unknown_key_without_a_close_one(self):
        with self.assertRaises(UnknownConfigKeyError) as raised:
            setup_cfg(TENSORMASK_CONFIG, ["NOTHING.LIKE.IT", "1"])
        self.assertEqual(
            str(raised.exception), "Non-existent key: NOTHING.LIKE.IT (in the KEY VALUE overrides)"
        )

    def test_key_below_a_value(self):
        with self.assertRaisesRegex(UnknownConfigKeyError, r"Non-existent key: MODEL\.DEVICE\.X"):
            setup_cfg(TENSORMASK_CONFIG, ["MODEL.DEVICE.X", "1"])

    def test_unknown_key_in_file(self):
        path = os.path.join(self.tmp, "typo.yaml")
        with open(path, "w") as f:
            f.write(f'_BASE_: "{BLENDMASK_CONFIG}"\nSOLVER:\n  MAX_ITERS: 10\n')
        with self.assertRaises(KeyError) as raised:
            setup_cfg(path)
        self.assertEqual(
            str(raised.exception),
            f"Non-existent config key: SOLVER.MAX_ITERS (in {path} or a _BASE_ file of it); "
            "did you mean SOLVER.MAX_ITER?",
        )

    def test_odd_overrides_and_missing_file_are_yacs_errors(self):
        with self.assertRaisesRegex(AssertionError, "odd length"):
            setup_cfg(TENSORMASK_CONFIG, ["SOLVER.MAX_ITER"])
        missing = os.path.join(self.tmp, "no_such_config.yaml")
        with self.assertRaisesRegex(AssertionError, "no_such_config.yaml"):
            setup_cfg(missing)

    def test_score_threshold_lowered_never_raised(self):
        # The defaults: TensorMask 0.05, BlendMask (FCOS) 0.05, Mask R-CNN 0.05.
        for config, read in [
            (TENSORMASK_CONFIG, lambda c: c.MODEL.TENSOR_MASK.SCORE_THRESH_TEST),
            (BLENDMASK_CONFIG, lambda c: c.MODEL.FCOS.INFERENCE_TH_TEST),
            (BASELINE_CONFIG, lambda c: c.MODEL.ROI_HEADS.SCORE_THRESH_TEST),
        ]:
            with self.subTest(config=os.path.basename(config)):
                self.assertAlmostEqual(read(setup_cfg(config)), 0.05)
                self.assertAlmostEqual(read(setup_cfg(config, score_threshold=0.01)), 0.01)
                self.assertAlmostEqual(read(setup_cfg(config, score_threshold=0.5)), 0.05)

    def test_score_threshold_of_an_architecture_outside_the_table(self):
        opts = ["MODEL.META_ARCHITECTURE", "ProposalNetwork"]
        cfg = setup_cfg(TENSORMASK_CONFIG, opts, score_threshold=0.01)
        self.assertAlmostEqual(cfg.MODEL.TENSOR_MASK.SCORE_THRESH_TEST, 0.05)  # untouched

    def test_datasets_replaced(self):
        cfg = setup_cfg(TENSORMASK_CONFIG, datasets={"TEST": ["shapes_train"]})
        self.assertEqual(cfg.DATASETS.TEST, ("shapes_train",))
        self.assertEqual(cfg.DATASETS.TRAIN, ("shapes_train",))  # (the config's)
        cfg = setup_cfg(TENSORMASK_CONFIG, datasets={"TRAIN": ("a", "b")})
        self.assertEqual(cfg.DATASETS.TRAIN, ("a", "b"))
        with self.assertRaisesRegex(ValueError, "'VAL' is not a split of DATASETS"):
            setup_cfg(TENSORMASK_CONFIG, datasets={"VAL": ["shapes_val"]})


if __name__ == "__main__":
    unittest.main()
