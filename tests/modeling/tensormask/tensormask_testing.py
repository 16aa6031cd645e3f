"""Helpers shared by the TensorMask tests: configs, head variants and synthetic inputs."""

import functools
import os

import project_testing
from project_testing import CONFIG_DIR, project_cfg

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures")
QUICK_CONFIG = os.path.join(CONFIG_DIR, "quick_schedules", "tensormask_R_18_GN_FPN_shapes.yaml")
OFFICIAL_CONFIG = os.path.join(CONFIG_DIR, "TensorMask", "tensormask_R_50_FPN_1x.yaml")

# One window size of 24 px on P2 (6 cells of 4 px): divisible by the upscaling factors 1.5 and 3.
_ONE_SIZE = ["MODEL.ANCHOR_GENERATOR.SIZES", [[24], [48], [96], [192], [384]]]

# Every head variant of the paper, as overrides of the quick config.
HEAD_VARIANTS = {
    "natural": ["MODEL.TENSOR_MASK.ALIGNED_ON", False, "MODEL.TENSOR_MASK.BIPYRAMID_ON", False],
    "aligned": ["MODEL.TENSOR_MASK.ALIGNED_ON", True, "MODEL.TENSOR_MASK.BIPYRAMID_ON", False],
    "natural_upscale_1.5": _ONE_SIZE
    + ["MODEL.TENSOR_MASK.ALIGNED_ON", False, "MODEL.TENSOR_MASK.BIPYRAMID_ON", False]
    + ["MODEL.TENSOR_MASK.UPSCALE_FACTOR", 1.5],
    "aligned_upscale_1.5": _ONE_SIZE
    + ["MODEL.TENSOR_MASK.ALIGNED_ON", True, "MODEL.TENSOR_MASK.BIPYRAMID_ON", False]
    + ["MODEL.TENSOR_MASK.UPSCALE_FACTOR", 1.5],
    "aligned_upscale_3_nearest": _ONE_SIZE
    + ["MODEL.TENSOR_MASK.ALIGNED_ON", True, "MODEL.TENSOR_MASK.BIPYRAMID_ON", False]
    + ["MODEL.TENSOR_MASK.UPSCALE_FACTOR", 3.0, "MODEL.TENSOR_MASK.UPSCALE_MODE", "nearest"],
    "bipyramid_one_size": _ONE_SIZE,
    "bipyramid": [],
    "mask_only": ["MODEL.TENSOR_MASK.BOX_HEAD_ON", False, "MODEL.TENSOR_MASK.NMS_BOXES", "mask"],
    "box_head_mask_bb_nms": ["MODEL.TENSOR_MASK.NMS_BOXES", "mask"],
    "box_only": ["MODEL.MASK_ON", False],
}


def tensormask_cfg(config_file=QUICK_CONFIG, opts=()):
    """A project cfg from ``config_file`` (default: the TensorMask quick config) and ``opts``."""
    return project_cfg(config_file, opts)


# TensorMask's inputs have triangular masks, so that a mask differs from its box.
make_input = functools.partial(project_testing.make_input, shape="triangle")

# Three objects of various sizes in one image, none in the other.
REGULAR_AND_EMPTY_IMAGES = [
    ((128, 160), [[10, 12, 40, 50], [60, 20, 150, 110], [100, 90, 112, 104]], [0, 3, 5], 1),
    ((128, 160), [], [], 2),
]
regular_and_empty_batch = functools.partial(
    project_testing.regular_and_empty_batch, REGULAR_AND_EMPTY_IMAGES, shape="triangle"
)
