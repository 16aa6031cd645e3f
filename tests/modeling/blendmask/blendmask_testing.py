"""Helpers shared by the BlendMask tests: configs, synthetic inputs and FCOS on fixed outputs."""

import functools
import os

import project_testing
from project_testing import CONFIG_DIR, project_cfg
from torch import nn

from tensormask_proj.modeling.blendmask.fcos import FCOS

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures")
QUICK_CONFIG = os.path.join(CONFIG_DIR, "BlendMask", "Base-Shapes.yaml")


def blendmask_cfg(config_file=QUICK_CONFIG, opts=()):
    """A project cfg from ``config_file`` (default: the BlendMask quick config) and ``opts``."""
    return project_cfg(config_file, opts)


# Objects of several sizes in two images of different sizes, none in the third.
REGULAR_AND_EMPTY_IMAGES = [
    ((128, 160), [[10, 12, 70, 90], [90, 20, 110, 40], [60, 60, 150, 120]], [0, 3, 5], 0),
    ((120, 128), [[30, 30, 60, 50]], [2], 1),
    ((128, 128), [], [], 2),
]
regular_and_empty_batch = functools.partial(
    project_testing.regular_and_empty_batch, REGULAR_AND_EMPTY_IMAGES
)


class FixedHead(nn.Module):
    """An FCOS head that returns ``outputs``, whatever the features."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, features):
        return self.outputs


def fixed_fcos(outputs, **kwargs):
    """
    FCOS (in training mode) on one level "p3" of stride 8, whose head predicts ``outputs``:
    (logits, deltas, quality, box features), a list of one tensor per level each. NUM_CLASSES
    is the logits' channel count unless ``num_classes`` is given.
    """
    kwargs.setdefault("num_classes", outputs[0][0].shape[1] if outputs else None)
    return FCOS(
        head=FixedHead(outputs), in_features=["p3"], strides=[8], sizes_of_interest=[], **kwargs
    )
