"""Helpers shared by the BlendMask tests: configs and synthetic inputs."""

import os

import torch
from project_testing import CONFIG_DIR, make_instances, project_cfg

from tensormask_proj.data.dataset_mapper import thing_semantic_from_instances

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures")
QUICK_CONFIG = os.path.join(CONFIG_DIR, "BlendMask", "Base-Shapes.yaml")


def blendmask_cfg(config_file=QUICK_CONFIG, opts=()):
    """A project cfg from ``config_file`` (default: the BlendMask quick config) and ``opts``."""
    return project_cfg(config_file, opts)


def make_input(image_size=(128, 160), boxes=(), classes=(), seed=0, bitmask=False):
    """A model input dict with a random uint8 image, instances and basis_sem."""
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    inst = make_instances(image_size, list(boxes), list(classes), bitmask)
    return {
        "image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
        "height": h,
        "width": w,
        "instances": inst,
        "basis_sem": thing_semantic_from_instances(inst, image_size),
    }


def regular_and_empty_batch():
    """Two images with objects of several sizes and one image without any."""
    return [
        make_input(
            (128, 160), [[10, 12, 70, 90], [90, 20, 110, 40], [60, 60, 150, 120]], [0, 3, 5]
        ),
        make_input((120, 128), [[30, 30, 60, 50]], [2], seed=1),
        make_input((128, 128), [], [], seed=2),
    ]
