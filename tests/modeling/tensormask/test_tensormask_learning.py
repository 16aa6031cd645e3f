"""
Learning test (about 3-4.5 minutes): the quick TensorMask config trains from scratch on
the embedded "shapes_train" dataset and reaches a mask AP on "shapes_val" clearly above chance,
measured with detectron2's COCOEvaluator. To stay under 10 minutes on a slow day of these shared
machines (the full 500-iteration float32 schedule took 12 minutes in one CI run, 500 iterations
in bfloat16 11.5), it trains 400 iterations of 4 images with bfloat16 CPU autocast.
"""
import tempfile
import unittest

import pytest

from project_testing import train_and_evaluate
from .tensormask_testing import QUICK_CONFIG, tensormask_cfg

# Measured with this exact test on the default shapes style (generator version 6) and the quick
# config's 32/48 px windows, 2026-11-30, 2 threads: with the mask loss weight 4.0 (the config
# now) mask AP 22.56, mask AP50 34.74, box AP 17.84 (385 s, beside a BlendMask training); with
# the official 2.0, 19.84 / 32.28 / 15.37 (202 s). The full quick schedule through train_net.py
# gives 60.2 / 83.2 / 55.6 (SEED 0). Untrained, no detection passes the score threshold (AP 0).
# The bounds are about half the values measured with the official weight, a margin for the
# run-to-run variation of a from-scratch training (thread count, libraries).
MIN_MASK_AP = 9.9
MIN_MASK_AP50 = 16.1
MIN_BOX_AP = 7.6
# The quick config with a 400-iteration schedule, in bfloat16 autocast.
LEARNING_OPTS = ["SOLVER.AMP.ENABLED", True, "SOLVER.MAX_ITER", 400, "SOLVER.STEPS", (320, 380)]


@pytest.mark.slow
class TestLearning(unittest.TestCase):
    def test_quick_config_learns_shapes(self):
        # Runs with torch's default thread count (2 on the project's machines and CI).
        cfg = tensormask_cfg(QUICK_CONFIG, LEARNING_OPTS)
        with tempfile.TemporaryDirectory() as output_dir:
            results, _ = train_and_evaluate(cfg, output_dir)
        mask_ap, box_ap = results["segm"]["AP"], results["bbox"]["AP"]
        mask_ap50 = results["segm"]["AP50"]
        self.assertGreater(mask_ap, MIN_MASK_AP)
        self.assertGreater(mask_ap50, MIN_MASK_AP50)
        self.assertGreater(box_ap, MIN_BOX_AP)


if __name__ == "__main__":
    unittest.main()
