"""
Config extensions. Each ``add_*_config(cfg)`` adds one model's (or the training loop's) keys
(with their defaults) to the cfg it is given; detectron2's global defaults are never modified.
"""

from .blendmask import add_blendmask_config
from .tensormask import add_tensormask_config
from .training import add_training_config


def add_project_config(cfg):
    """Add the keys of every model of this project, and of its training loop, to ``cfg`` (in
    place) and return it."""
    add_tensormask_config(cfg)
    add_blendmask_config(cfg)
    add_training_config(cfg)
    return cfg


def get_project_cfg():
    """A fresh detectron2 cfg with every key of this project added."""
    from detectron2.config import get_cfg

    return add_project_config(get_cfg())
