"""
``--dataset NAME JSON IMAGE_DIR`` (repeatable): register COCO-format datasets from the command line
of ``train_net.py``, ``demo.py`` and ``tools/visualize_data.py``, then use NAME in DATASETS.TRAIN /
DATASETS.TEST like any registered dataset.

Why a flag and not config keys: in detectron2 a config names datasets (DATASETS.TRAIN) and code
registers them (``register_coco_instances`` in ``builtin.py`` or a user's script); the flag is the
command-line form of that call. Paths stay out of the config, so a config (and the config.yaml
that training saves) stays portable between machines and loads in plain detectron2, which would
reject keys it does not know.
"""
import argparse
import logging
import os
from typing import List, Optional, Sequence, Tuple

from detectron2.config import CfgNode

from ..data.coco_checks import CocoCheck
from ..data.coco_datasets import describe_registration, register_coco_dataset

__all__ = ["add_dataset_argument", "register_command_line_datasets", "log_registrations"]

logger = logging.getLogger(__name__)


def add_dataset_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format instances dataset (checked first) under NAME, for use in "
        "DATASETS.TRAIN / DATASETS.TEST; repeatable; give it before the KEY VALUE config "
        "overrides, which take the rest of the command line",
    )
    return parser


def register_command_line_datasets(
    specs: Sequence[Sequence[str]], cfg: CfgNode, cache_dir: Optional[str] = None
) -> List[Tuple[str, CocoCheck]]:
    """
    Register each (NAME, JSON, IMAGE_DIR) of ``specs`` with :func:`register_coco_dataset`.

    Args:
        cfg: the merged config: its INPUT.MASK_FORMAT decides whether RLE masks are an error
            (when MODEL.MASK_ON); checked jsons go to ``cache_dir`` (default
            OUTPUT_DIR/checked_datasets).

    Returns:
        [(name, CocoCheck)] in order, for :func:`log_registrations`.
    """
    mask_format = cfg.INPUT.MASK_FORMAT if cfg.MODEL.MASK_ON else None
    cache_dir = cache_dir or os.path.join(cfg.OUTPUT_DIR, "checked_datasets")
    return [
        (name, register_coco_dataset(name, json_file, image_root, cache_dir, mask_format))
        for name, json_file, image_root in specs
    ]


def log_registrations(registrations: Sequence[Tuple[str, CocoCheck]]) -> None:
    """Log what was registered; skips and fixes as warnings, with their counts."""
    for name, check in registrations:
        log = logger.warning if check.changed else logger.info
        log(describe_registration(name, check))
