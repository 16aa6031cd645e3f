#!/usr/bin/env python
"""
Where a trained model's AP goes on a dataset: for each ground-truth instance, the best-scoring
detection covering it (mask IoU >= --iou, any class) and the class it gave, as a confusion
matrix; counts by COCO size; the scores a ``demo.py --confidence-threshold`` would see; and COCO
mask/box AP with and without classes, in all and by size with AP50 and AP75; and how tight the
covering detections are (mean mask and box IoU by class and size)
(``tensormask_proj/evaluation/class_confusion.py``).

    python tools/class_confusion.py \\
        --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml \\
        MODEL.WEIGHTS output/model_final.pth
    python tools/class_confusion.py --config-file CONFIG --dataset shapes_train \\
        MODEL.WEIGHTS output/model_final.pth
    python tools/class_confusion.py --config-file CONFIG --dataset mine val.json images/ \\
        MODEL.WEIGHTS output/model_final.pth

The dataset is the last ``--dataset`` given (``NAME`` for a registered one, ``NAME JSON
IMAGE_DIR`` for your own COCO data), else the config's DATASETS.TEST[0]. Inference runs
as in ``train_net.py --eval-only`` (same test loader and mapper, bfloat16 on a CPU when
SOLVER.AMP.ENABLED), with the config's score threshold and detections per image.
"""

import argparse
import logging
import sys
import tempfile

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from detectron2.utils.logger import setup_logger

from tensormask_proj.engine import (
    NamedErrorMapper,
    add_dataset_argument,
    build_readable_test_loader,
    check_num_classes,
    check_weights,
    chosen_dataset,
    cpu_autocast,
    log_registrations,
    register_command_line_datasets,
    setup_cfg,
)
from tensormask_proj.evaluation import ClassConfusion

logger = logging.getLogger("tensormask_proj.class_confusion")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Class confusion of a trained model")
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="config file of the trained model"
    )
    parser.add_argument(
        "--iou", type=float, default=0.5, help="least mask IoU of a covering detection"
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth; last on "
        "the command line (they take the rest of it)",
    )
    return add_dataset_argument(
        parser, help="The dataset evaluated is the last --dataset's (default: DATASETS.TEST[0])"
    )


def _rle(mask: np.ndarray) -> dict:
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))


def _ground_truth(record: dict):
    """(RLEs, XYXY boxes, classes, crowd flags) of one dataset dict (polygons or RLE)."""
    height, width = record["height"], record["width"]
    masks, boxes, classes, crowd = [], [], [], []
    for ann in record.get("annotations", []):
        segm = ann.get("segmentation")
        if not segm:
            raise ValueError(
                f"image {record['file_name']} (id {record.get('image_id')}): an annotation has "
                "no segmentation; class_confusion.py compares masks"
            )
        if isinstance(segm, dict) and not isinstance(segm["counts"], list):
            masks.append(segm)  # compressed RLE
        elif isinstance(segm, dict):  # uncompressed RLE
            masks.append(mask_util.frPyObjects(segm, height, width))
        else:  # polygons
            masks.append(mask_util.merge(mask_util.frPyObjects(segm, height, width)))
        boxes.append(BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS))
        classes.append(int(ann["category_id"]))
        crowd.append(bool(ann.get("iscrowd", 0)))
    return masks, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), classes, crowd


def main(argv=None) -> ClassConfusion:
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="tensormask_proj")
    with tempfile.TemporaryDirectory(prefix="class_confusion_") as cache_dir:
        # (Frozen once DATASETS.TEST is the dataset evaluated, which needs --dataset registered.)
        cfg = setup_cfg(args.config_file, args.opts, freeze=False)
        check_weights(cfg, required=True)
        log_registrations(register_command_line_datasets(args.dataset, cfg, cache_dir))
        split = chosen_dataset(args.dataset, cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
        if split is None:
            raise ValueError(
                "no dataset to evaluate: DATASETS.TEST is empty; choose one with --dataset NAME "
                "(registered) or --dataset NAME JSON IMAGE_DIR (your own COCO data)"
            )
        if split not in DatasetCatalog.list():
            raise ValueError(
                f"DATASETS.TEST[0]: dataset '{split}' is not registered; choose one with "
                "--dataset NAME (registered) or --dataset NAME JSON IMAGE_DIR (your own COCO data)"
            )
        cfg.DATASETS.TEST = (split,)
        cfg.freeze()
        check_num_classes(cfg, splits=("TEST",))
        class_names = MetadataCatalog.get(split).get("thing_classes")
        if not class_names:
            raise ValueError(f"dataset {split} has no thing_classes in its metadata")

        model = build_model(cfg).eval()
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        records = {r["image_id"]: r for r in DatasetCatalog.get(split)}
        mapper = NamedErrorMapper(DatasetMapper(cfg, is_train=False))
        confusion = ClassConfusion(class_names, iou_threshold=args.iou)
        # (Unreadable images are left out of the counts and listed, as in train_net's evaluation.)
        loader = build_readable_test_loader(cfg, split, mapper)
        with torch.no_grad(), cpu_autocast(cfg):
            for batch in loader:
                for inputs, outputs in zip(batch, model(batch)):
                    record = records[inputs["image_id"]]
                    instances = outputs["instances"].to("cpu")
                    if not instances.has("pred_masks"):
                        raise ValueError(
                            f"{cfg.MODEL.META_ARCHITECTURE} gives no masks "
                            f"(MODEL.MASK_ON {cfg.MODEL.MASK_ON}): class_confusion.py "
                            "compares masks"
                        )
                    gt_masks, gt_boxes, gt_classes, gt_crowd = _ground_truth(record)
                    confusion.add_image(
                        record["height"],
                        record["width"],
                        gt_masks,
                        gt_boxes,
                        gt_classes,
                        gt_crowd,
                        [_rle(m) for m in instances.pred_masks.numpy()],
                        instances.pred_boxes.tensor.float().numpy(),
                        instances.scores.float().numpy(),
                        instances.pred_classes.numpy(),
                    )
    left_out = f", {len(loader.unreadable)} unreadable left out" if loader.unreadable else ""
    print(f"{split}: {len(records)} images{left_out}, {cfg.MODEL.WEIGHTS}")
    print(confusion.format())
    return confusion


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        print(f"class_confusion.py: error: {e}", file=sys.stderr)
        sys.exit(2)
