#!/usr/bin/env python
"""
Where TensorMask's label assignment puts the positive windows of a dataset: counts by pyramid
level and window size, and per object. It prints figures; it is not a test.

A level whose windows are never positive learns nothing but "background", which is what the
quick config's 16/24 px windows on P2 did with objects from 24 px (docs/datasets.md, "Window sizes").
Use it to check ``MODEL.ANCHOR_GENERATOR.SIZES`` against a dataset before training:

    python benchmarks/positives_by_level.py                     # the quick config, shapes_train
    python benchmarks/positives_by_level.py --dataset shapes_stress_train
    python benchmarks/positives_by_level.py --config-file CONFIG \\
        --dataset my_train my_data/train/annotations.json my_data/train/images \\
        MODEL.TENSOR_MASK.NUM_CLASSES 3

The dataset counted is the last ``--dataset`` given (``NAME`` for a registered dataset, ``NAME
JSON IMAGE_DIR`` for your own COCO data, checked and registered as by ``train_net.py``), else the
config's DATASETS.TRAIN[0].

Images are taken at the config's first ``INPUT.MIN_SIZE_TRAIN`` (boxes scaled like
detectron2's ResizeShortestEdge), padded to the backbone's size divisibility as in training;
crowd annotations are left out, as the model's mapper does.
"""
import argparse
import math
import os
import sys
import tempfile

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
from tensormask_proj import get_project_cfg  # noqa: E402, I001

from detectron2.data import DatasetCatalog  # noqa: E402

from tensormask_proj.engine import (  # noqa: E402
    add_dataset_argument,
    chosen_dataset,
    log_registrations,
    register_command_line_datasets,
)
from tensormask_proj.modeling.tensormask import assign_windows  # noqa: E402

DEFAULT_CONFIG = os.path.join(
    REPO_ROOT, "configs", "quick_schedules", "tensormask_R_18_GN_FPN_shapes.yaml"
)
# Strides of FPN levels p2..p7.
_STRIDES = {f"p{k}": 2 ** k for k in range(2, 8)}


def count_positives(cfg, dataset_dicts):
    """
    Returns:
        by_level (ndarray[L, A]): positive windows per level and window id,
        per_object (ndarray[G]): positive windows of every non-crowd object.
    """
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    features = cfg.MODEL.TENSOR_MASK.IN_FEATURES
    strides = [_STRIDES[f] for f in features]
    min_anchor_size = min(sizes[0]) - strides[0]  # as the model computes it
    divisibility = max(strides[-1], 32)
    short, long_max = cfg.INPUT.MIN_SIZE_TRAIN[0], cfg.INPUT.MAX_SIZE_TRAIN
    by_level = np.zeros((len(strides), len(sizes[0])), dtype=np.int64)
    per_object = []
    for d in dataset_dicts:
        h, w = d["height"], d["width"]
        scale = short / min(h, w)
        if max(h, w) * scale > long_max:
            scale = long_max / max(h, w)
        padded = [math.ceil(v * scale / divisibility) * divisibility for v in (h, w)]
        grid = [(padded[0] // s, padded[1] // s) for s in strides]
        anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        if not anns:
            continue
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in anns],
            dtype=torch.float32,
        ) * scale
        targets = assign_windows(
            boxes, torch.zeros(len(anns), dtype=torch.int64), grid, strides, sizes,
            cfg.MODEL.TENSOR_MASK.NUM_CLASSES, min_anchor_size,
        )
        starts = np.cumsum([0] + [gh * gw * len(sizes[0]) for gh, gw in grid])
        index = targets.pos_indices.numpy()
        level = np.searchsorted(starts, index, side="right") - 1
        np.add.at(by_level, (level, index % len(sizes[0])), 1)
        per_object += torch.bincount(targets.pos_gt, minlength=len(anns)).tolist()
    return by_level, np.asarray(per_object)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--config-file", default=DEFAULT_CONFIG, metavar="FILE",
        help="a TensorMask config (default: the quick shapes config)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.ANCHOR_GENERATOR.SIZES "
        "\"[[24, 32], [48, 64]]\"; last on the command line (they take the rest of it)",
    )
    return add_dataset_argument(
        parser, help="The dataset counted is the last --dataset's (default: DATASETS.TRAIN[0])"
    )


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.META_ARCHITECTURE != "TensorMask":
        parser.error(f"{args.config_file} is not a TensorMask config (MODEL.META_ARCHITECTURE "
                     f"{cfg.MODEL.META_ARCHITECTURE})")
    with tempfile.TemporaryDirectory(prefix="positives_by_level_") as cache_dir:
        try:
            log_registrations(register_command_line_datasets(args.dataset, cfg, cache_dir))
        except (ValueError, FileNotFoundError) as e:  # (CocoDatasetError is a ValueError)
            parser.error(str(e))
        name = chosen_dataset(args.dataset, cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
        if name is None or name not in DatasetCatalog.list():
            parser.error(f"DATASETS.TRAIN[0]: dataset {name!r} is not registered; choose one with "
                         "--dataset NAME or --dataset NAME JSON IMAGE_DIR")
        dicts = DatasetCatalog.get(name)
    by_level, per_object = count_positives(cfg, dicts)
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    total = int(by_level.sum())
    print(f"{name}: {len(per_object)} objects, {total} positive windows, "
          f"{per_object.mean():.2f} per object, {int((per_object == 0).sum())} objects with none")
    for feature, level_sizes, counts in zip(cfg.MODEL.TENSOR_MASK.IN_FEATURES, sizes, by_level):
        cells = ", ".join(f"{s} px: {c}" for s, c in zip(level_sizes, counts))
        print(f"  {feature}: {int(counts.sum()):6d}  ({cells})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
