#!/usr/bin/env python
"""
Draw the predictions of a trained TensorMask or BlendMask model on images.

    python demo.py --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml \\
        --input photo.jpg 'more/*.jpg' folder/ --output vis/ \\
        --opts MODEL.WEIGHTS output/model_final.pth

One PNG per input image is written to ``--output`` (same base name, ``.png``): the image with
each instance's mask, box, class name and score drawn by detectron2's ``Visualizer``. Only
instances scoring at least ``--confidence-threshold`` are drawn. The class names and colours are
those of the last ``--dataset`` given, else of the config's ``DATASETS.TEST[0]``: a model trained
on your own COCO data takes the same ``--dataset NAME JSON IMAGE_DIR`` as ``train_net.py``
(``--dataset NAME`` for a registered dataset); a class count that differs from the model's is an
error.

Every input is checked before the model is loaded: a missing file, a glob or folder without
images, or an image that cannot be decoded stops the run with an error naming it, and nothing is
written. PNGs are written under a temporary name and renamed, so an interrupted run never leaves
a truncated picture.
"""

import argparse
import glob
import logging
import os
import sys
import tempfile
from typing import List

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
import cv2
import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import ColorMode, Visualizer

from tensormask_proj.data.coco_checks import CocoDatasetError
from tensormask_proj.engine import (
    AtomicDetectionCheckpointer,
    add_dataset_argument,
    check_device,
    check_num_classes,
    check_weights,
    chosen_dataset,
    log_registrations,
    register_command_line_datasets,
    setup_cfg,
)
from tensormask_proj.utils import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

logger = logging.getLogger("tensormask_proj.demo")


class DemoError(Exception):
    """A problem with the command line (inputs, weights, device); printed without traceback."""


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="TensorMask / BlendMask demo (detectron2)")
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="config file of the trained model"
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image files, glob patterns (quoted) or folders of images",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for the PNG visualisations"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score of the instances drawn",
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth; last on "
        "the command line (they take the rest of it)",
    )
    return add_dataset_argument(
        parser, help="The class names drawn are the last --dataset's (default: DATASETS.TEST[0])"
    )


def collect_inputs(patterns: List[str]) -> List[str]:
    """Image paths named by ``patterns`` (files, globs, folders), in order, without repeats."""
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise DemoError(
                    f"--input: folder {pattern} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
        elif glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
            if not found:
                raise DemoError(f"--input: no file matches {pattern}")
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            raise DemoError(f"--input: no such file or folder: {pattern}")
        files.extend(found)
    files = list(dict.fromkeys(files))
    by_output = {}
    for path in files:
        by_output.setdefault(output_name(path), []).append(path)
    clashes = {name: paths for name, paths in by_output.items() if len(paths) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise DemoError(f"--input: {', '.join(paths)} would all be written to {name}")
    return files


def output_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0] + ".png"


def unreadable_images(paths: List[str], image_format: str) -> List[str]:
    """'path (reason)' for every image of ``paths`` that cannot be decoded."""
    bad = []
    for path in paths:
        try:
            read_image(path, format=image_format)
        except Exception as e:  # PIL raises OSError, UnidentifiedImageError, ValueError...
            bad.append(f"{path} ({type(e).__name__}: {e})")
    return bad


class Predictor:
    """
    detectron2's ``DefaultPredictor`` (resize to the test size, one image per forward), with
    the weights loaded by :class:`AtomicDetectionCheckpointer` so that a damaged weights file
    is named in the error.
    """

    def __init__(self, cfg):
        self.model = build_model(cfg)
        self.model.eval()
        AtomicDetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    @torch.no_grad()
    def __call__(self, image: np.ndarray):
        """
        Args:
            image: (H, W, 3) uint8 in the config's INPUT.FORMAT.
        Returns:
            Instances of the predictions in the coordinates of ``image``.
        """
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        return self.model([{"image": tensor, "height": height, "width": width}])[0]["instances"]


def draw_predictions(image_rgb: np.ndarray, instances, metadata) -> np.ndarray:
    """
    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        instances: with ``pred_boxes``, ``scores``, ``pred_classes`` and optionally
            ``pred_masks`` ((N, H, W) bool), on any device.
        metadata: for ``thing_classes`` (names) and ``thing_colors``.
    Returns:
        (H, W, 3) uint8 RGB picture.
    """
    # With per-class colours, instances of one class share a colour, as in the dataset's
    # own pictures; otherwise the Visualizer picks random colours.
    mode = ColorMode.SEGMENTATION if metadata.get("thing_colors") else ColorMode.IMAGE
    visualizer = Visualizer(image_rgb, metadata, instance_mode=mode)
    return visualizer.draw_instance_predictions(instances.to("cpu")).get_image()


def describe(instances, metadata, limit: int = 5) -> str:
    """'3 instances: square 0.93, circle 0.71, ...' (highest scores first)."""
    names = metadata.get("thing_classes")
    order = instances.scores.argsort(descending=True).tolist()[:limit]
    parts = []
    for i in order:
        cls = int(instances.pred_classes[i])
        label = names[cls] if names and cls < len(names) else f"class {cls}"
        parts.append(f"{label} {float(instances.scores[i]):.2f}")
    more = ", ..." if len(instances) > limit else ""
    return f"{len(instances)} instances" + (": " + ", ".join(parts) + more if parts else "")


def write_png_atomically(path: str, image_rgb: np.ndarray) -> None:
    """Encode ``image_rgb`` as PNG and move it into ``path`` only once fully written."""
    ok, encoded = cv2.imencode(".png", image_rgb[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"Cannot encode {path} as PNG")
    with atomic_write(path) as f:
        f.write(encoded.tobytes())


def register_datasets(args, cfg) -> None:
    """--dataset, checked as in train_net.py; the demo reads only their class names, so a checked
    copy of a json (written when annotations are skipped) can go to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="demo_datasets_") as cache_dir:
        try:
            log_registrations(register_command_line_datasets(args.dataset, cfg, cache_dir))
        except (CocoDatasetError, FileNotFoundError, ValueError) as e:
            raise DemoError(str(e)) from e


def run(args) -> List[str]:
    """Visualise every input of ``args``; return the paths of the PNGs written."""
    # The architecture's score threshold is lowered to --confidence-threshold when that is
    # lower, so that low-confidence instances exist to be drawn; the last --dataset is the one
    # whose class names are drawn (checked against the model's class count).
    cfg = setup_cfg(
        args.config_file,
        args.opts,
        score_threshold=args.confidence_threshold,
        datasets={"TEST": (chosen_dataset(args.dataset, None),)} if args.dataset else None,
    )
    register_datasets(args, cfg)
    try:
        check_device(cfg)
        check_weights(cfg, required=True)
        check_num_classes(cfg, splits=("TEST",))
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        raise DemoError(str(e)) from e
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise DemoError(f"--output must be a folder, {args.output} is a file")
    inputs = collect_inputs(args.input)
    bad = unreadable_images(inputs, cfg.INPUT.FORMAT)
    if bad:
        raise DemoError(
            f"{len(bad)} of {len(inputs)} input images cannot be read, nothing was written:\n  "
            + "\n  ".join(bad)
        )

    try:
        predictor = Predictor(cfg)
    except RuntimeError as e:
        if "Cannot read checkpoint" in str(e):
            raise DemoError(str(e)) from e
        raise
    metadata_name = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
    metadata = MetadataCatalog.get(metadata_name)
    if not metadata.get("thing_classes"):
        logger.warning(f"No class names for dataset '{metadata_name}': drawing class ids")

    os.makedirs(args.output, exist_ok=True)
    written = []
    for path in inputs:
        image = read_image(path, format=cfg.INPUT.FORMAT)
        instances = predictor(image)
        instances = instances[instances.scores >= args.confidence_threshold]
        image_rgb = convert_image_to_rgb(image, cfg.INPUT.FORMAT)
        picture = draw_predictions(image_rgb, instances, metadata)
        out_path = os.path.join(args.output, output_name(path))
        write_png_atomically(out_path, picture)
        logger.info(f"{path}: {describe(instances, metadata)} -> {out_path}")
        written.append(out_path)
    return written


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="tensormask_proj")
    logger.info(f"Arguments: {args}")
    try:
        run(args)
    except DemoError as e:
        print(f"demo.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
