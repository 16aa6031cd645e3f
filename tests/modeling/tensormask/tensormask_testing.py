"""Helpers shared by the TensorMask tests: configs, head variants and synthetic inputs."""

import os

import torch
from project_testing import CONFIG_DIR, project_cfg
from project_testing import make_instances as _make_instances

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


def make_input(image_size, boxes=(), classes=(), bitmask=False, seed=0):
    """A DatasetMapper-like dict with a random BGR image and the given instances."""
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    return {
        "image": torch.randint(0, 256, (3, h, w), generator=g).to(torch.float32),
        "instances": _make_instances(image_size, boxes, classes, bitmask, shape="triangle"),
        "height": h,
        "width": w,
    }


def regular_and_empty_batch(bitmask=False):
    """Two images: one with three objects of various sizes, one without any object."""
    return [
        make_input(
            (128, 160),
            [[10, 12, 40, 50], [60, 20, 150, 110], [100, 90, 112, 104]],
            [0, 3, 5],
            bitmask=bitmask,
            seed=1,
        ),
        make_input((128, 160), seed=2),
    ]
