"""Helpers shared by the BlendMask tests: configs, synthetic inputs and FCOS on fixed outputs."""

import functools
import os

import project_testing
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from project_testing import CONFIG_DIR, project_cfg
from torch import nn

from tensormask_proj.modeling.blendmask.fcos import FCOS
from tensormask_proj.modeling.blendmask.fcos_targets import compute_locations

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


def one_level_fcos(num_classes, **kwargs):
    """FCOS (in training mode) on one level "p3" of stride 8, for :func:`fcos_losses` and
    :func:`fcos_predict` (its head is never run)."""
    return FCOS(
        head=nn.Identity(),
        in_features=["p3"],
        strides=[8],
        num_classes=num_classes,
        sizes_of_interest=[],
        **kwargs,
    )


def _dense_inputs(fcos, predictions):
    """BlendMask's inputs to FCOS for the head outputs ``predictions`` (logits, deltas, quality,
    box features; a list of one (N, K, Hi, Wi) tensor per level each): the locations and the
    first three outputs transposed to (N, Hi*Wi, K)."""
    locations = compute_locations(predictions[0], fcos.strides)
    transposed = [[permute_to_N_HWA_K(x, x.shape[1]) for x in pred] for pred in predictions[:3]]
    return (locations, *transposed)


def fcos_losses(fcos, predictions, gt_instances):
    """``fcos.losses`` on the head outputs ``predictions``: (positives, loss_denorm, losses)."""
    return fcos.losses(*_dense_inputs(fcos, predictions), gt_instances)


def fcos_predict(fcos, predictions, image_sizes):
    """``fcos.predict`` on the head outputs ``predictions``: one Instances per image."""
    return fcos.predict(*_dense_inputs(fcos, predictions), image_sizes)
