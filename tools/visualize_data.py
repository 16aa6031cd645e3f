#!/usr/bin/env python
"""
Draw what a config trains on, to check a dataset's annotations (detectron2's tool of the same
name, for this project's configs, mappers and ``--dataset``):

    python tools/visualize_data.py --config-file CONFIG --source annotation --output vis/
    python tools/visualize_data.py --config-file CONFIG --source dataloader --output vis/ \\
        --dataset mine train.json images/ MODEL.TENSOR_MASK.NUM_CLASSES 3

The datasets drawn are those of ``--dataset`` (every one given, in order: ``NAME JSON IMAGE_DIR``
registers your own COCO data, ``NAME`` names a registered dataset), else the config's
DATASETS.TRAIN.

* ``--source annotation``: every image of those datasets with its ground truth (masks, boxes,
  class names; crowd regions too), as the dataset registration gives it. For a ``--dataset
  NAME JSON IMAGE_DIR``, that is after its checks: skipped annotations are not drawn and
  clipped boxes are drawn clipped.
* ``--source dataloader``: the training mapper's output (the one ``train_net.py`` uses, with
  its resizing and flips), image by image, as the model receives it; crowd regions and
  instances emptied by the augmentation are gone.

One PNG per image in ``--output``, named ``<index>_<image file stem>.png``. ``--num-images``
limits the count (default: all the images of the datasets, once each for "annotation"; as
many samples for "dataloader", which draws at random like training).
"""

import argparse
import itertools
import logging
import os
import tempfile

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

from tensormask_proj.engine import (
    NamedErrorMapper,
    add_dataset_argument,
    build_train_mapper,
    check_datasets,
    check_num_classes,
    log_registrations,
    register_command_line_datasets,
    setup_cfg,
)

logger = logging.getLogger("tensormask_proj.visualize_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw a training set's annotations to PNGs")
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="FILE",
        help="config file (its INPUT settings "
        "make the dataloader's samples; its class count is checked against the data)",
    )
    parser.add_argument(
        "--source",
        choices=["annotation", "dataloader"],
        required=True,
        help="the dataset's ground truth, or the training mapper's augmented output",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument(
        "--num-images", type=int, default=0, help="at most this many pictures (0: all)"
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.TENSOR_MASK.NUM_CLASSES 3; last "
        "on the command line (they take the rest of it)",
    )
    return add_dataset_argument(
        parser, help="The datasets drawn are every --dataset given (default: DATASETS.TRAIN)"
    )


def setup(args, cache_dir: str):
    """The frozen cfg, with the --dataset datasets registered (checked copies in cache_dir) and
    made its DATASETS.TRAIN."""
    names = tuple(dict.fromkeys(spec.name for spec in args.dataset))
    cfg = setup_cfg(args.config_file, args.opts, datasets={"TRAIN": names} if names else None)
    log_registrations(register_command_line_datasets(args.dataset, cfg, cache_dir))
    check_datasets(cfg, splits=("TRAIN",))
    check_num_classes(cfg, splits=("TRAIN",))
    return cfg


def _save(picture, output_dir: str, index: int, file_name: str) -> str:
    stem = os.path.splitext(os.path.basename(file_name))[0]
    path = os.path.join(output_dir, f"{index:04d}_{stem}.png")
    picture.save(path)
    return path


def draw_annotations(cfg, output_dir: str, limit: int):
    """Yield the PNG paths of DATASETS.TRAIN's images drawn with their ground truth."""
    dicts = (
        (d, MetadataCatalog.get(name))
        for name in cfg.DATASETS.TRAIN
        for d in DatasetCatalog.get(name)
    )
    for index, (d, metadata) in enumerate(itertools.islice(dicts, limit or None)):
        image = read_image(d["file_name"], format="RGB")
        picture = Visualizer(image, metadata).draw_dataset_dict(d)
        yield _save(picture, output_dir, index, d["file_name"])


def draw_dataloader(cfg, output_dir: str, limit: int):
    """Yield the PNG paths of ``limit`` training samples as the training mapper makes them."""
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    names = metadata.get("thing_classes")
    loader = build_detection_train_loader(cfg, mapper=NamedErrorMapper(build_train_mapper(cfg)))
    samples = (sample for batch in loader for sample in batch)  # the loader never ends
    for index, sample in enumerate(itertools.islice(samples, limit)):
        image = convert_image_to_rgb(sample["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT)
        target = sample["instances"]
        classes = target.gt_classes.tolist()
        picture = Visualizer(image, metadata).overlay_instances(
            labels=[names[c] if names else str(c) for c in classes],
            boxes=target.gt_boxes,
            masks=target.gt_masks if target.has("gt_masks") else None,
        )
        yield _save(picture, output_dir, index, sample["file_name"])


def main(argv=None):
    """Returns the paths of the PNGs written."""
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="tensormask_proj")
    # The checked copy of a --dataset json (written when annotations were skipped) is what the
    # drawing reads: it lives until the pictures are done.
    with tempfile.TemporaryDirectory(prefix="visualize_data_") as cache_dir:
        cfg = setup(args, cache_dir)
        os.makedirs(args.output, exist_ok=True)
        if args.source == "annotation":
            written = list(draw_annotations(cfg, args.output, args.num_images))
        else:
            train_sets = cfg.DATASETS.TRAIN
            limit = args.num_images or sum(len(DatasetCatalog.get(n)) for n in train_sets)
            written = list(draw_dataloader(cfg, args.output, limit))
    logger.info(f"{len(written)} pictures ({args.source}) written to {args.output}")
    return written


if __name__ == "__main__":
    main()
