"""
Checks run on a merged config before anything is built, so that a wrong device, weights file or
dataset fails at once with the key and the value to fix, instead of deep inside a data loader or
a checkpoint loader minutes later. Used by ``train_net.py`` and ``demo.py``.
"""

import os
from typing import List

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from .architectures import architecture_of, config_value

__all__ = [
    "check_device",
    "check_weights",
    "check_datasets",
    "check_num_classes",
    "check_config",
    "num_classes_keys",
]


def _is_remote(path: str) -> bool:
    # detectron2://, https://, manifold:// ... are resolved (downloaded) by the PathManager.
    return "://" in path


def check_device(cfg: CfgNode) -> None:
    """MODEL.DEVICE must exist on this machine."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is '{cfg.MODEL.DEVICE}' but no CUDA GPU is visible: add "
            "`MODEL.DEVICE cpu` to the command line (or use a config that sets it)"
        )


def check_weights(cfg: CfgNode, required: bool = False) -> None:
    """
    A local MODEL.WEIGHTS must be an existing file. ``required``: an empty MODEL.WEIGHTS is an
    error too (inference with a randomly initialised model is never what was meant).
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        if required:
            raise ValueError(
                "MODEL.WEIGHTS is empty: pass the trained model, e.g. "
                "`MODEL.WEIGHTS output/model_final.pth`"
            )
        return
    if not _is_remote(weights) and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS: weights file not found: {weights}")


def check_datasets(cfg: CfgNode, splits=("TRAIN", "TEST")) -> None:
    """
    Every dataset of DATASETS.<split> for ``splits`` is registered and its annotation file
    exists. (Evaluation alone needs only "TEST": one should not need COCO train2017 for it.)
    """
    registered = DatasetCatalog.list()
    for key in splits:
        for name in cfg.DATASETS[key]:
            if name not in registered:
                raise KeyError(
                    f"DATASETS.{key}: dataset '{name}' is not registered. Registered datasets: "
                    f"{', '.join(sorted(registered))}"
                )
            # The embedded shapes datasets generate their json on this access.
            json_file = getattr(MetadataCatalog.get(name), "json_file", None)
            if json_file and not _is_remote(json_file) and not os.path.isfile(json_file):
                raise FileNotFoundError(
                    f"DATASETS.{key}: annotations of dataset '{name}' not found at {json_file}. "
                    "Set DETECTRON2_DATASETS to the folder holding the datasets (see "
                    "docs/datasets.md, 'COCO')."
                )


def num_classes_keys(cfg: CfgNode) -> List[str]:
    """The config keys holding the number of classes of cfg's meta-architecture (none for an
    architecture outside the table of :mod:`.architectures`: nothing to check)."""
    return architecture_of(cfg, unknown_ok=True).class_count_keys(cfg)


def check_num_classes(cfg: CfgNode, splits=("TRAIN", "TEST")) -> None:
    """
    Every dataset of DATASETS.<split> whose class names are known (``thing_classes`` in its
    metadata) has as many classes as the model. More classes in the data would crash the loss
    mid-training; more in the model would predict classes that COCOEvaluator cannot map back to
    a category id, and would waste capacity.
    """
    keys = num_classes_keys(cfg)
    for split in splits:
        for name in cfg.DATASETS[split]:
            classes = MetadataCatalog.get(name).get("thing_classes")
            if classes is None:
                continue
            wrong = [k for k in keys if config_value(cfg, k) != len(classes)]
            if wrong:
                values = ", ".join(f"{k} = {config_value(cfg, k)}" for k in wrong)
                setting = " ".join(f"{k} {len(classes)}" for k in keys)
                raise ValueError(
                    f"DATASETS.{split}: dataset '{name}' has {len(classes)} classes but the "
                    f"model has {values}: add `{setting}` to the command line (or the config)"
                )


def check_config(cfg: CfgNode, eval_only: bool = False) -> None:
    """
    All of the above for train_net.py (MODEL.WEIGHTS may be empty: training from scratch).
    ``eval_only``: only the DATASETS.TEST datasets are checked.
    """
    splits = ("TEST",) if eval_only else ("TRAIN", "TEST")
    check_device(cfg)
    check_weights(cfg)
    check_datasets(cfg, splits=splits)
    check_num_classes(cfg, splits=splits)
