#!/usr/bin/env python
"""
Export a TensorMask or BlendMask model to TorchScript or ONNX (detectron2's
tools/deploy/export_model.py for this project's models).

    python tools/export_model.py \\
        --config-file configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml \\
        --format onnx --export-method tracing --output exported/ \\
        MODEL.WEIGHTS output/model_final.pth

The model is traced on ``--sample-image`` (default: the first image of the embedded
``shapes_val`` dataset) after the config's test-time resize. The exported model takes one such
image (Tensor[3, H, W] float32, INPUT.FORMAT channel order, any H and W) and returns
(pred_boxes, pred_classes, pred_masks, scores, image_size); see tensormask_proj/export and the
docs/export.md for loading it (TorchScript needs ``torch.ops.load_library`` on the
built tensormask_proj/_C*.so).
"""

import argparse
import logging
import sys

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from tensormask_proj.engine import (
    AtomicDetectionCheckpointer,
    check_device,
    check_weights,
    setup_cfg,
)
from tensormask_proj.export import (
    EXPORT_FORMATS,
    ExportError,
    export_model,
    op_library_path,
    sample_image,
)

logger = logging.getLogger("tensormask_proj.export_model")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a TensorMask or BlendMask model")
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="config file of the model"
    )
    parser.add_argument(
        "--format",
        choices=sorted(EXPORT_FORMATS),
        default="torchscript",
        help="torchscript: DIR/model.ts, loaded with torch.jit.load after "
        "torch.ops.load_library on the built tensormask_proj/_C*.so; onnx: DIR/model.onnx, "
        "for onnxruntime (no extension needed). Default: torchscript",
    )
    parser.add_argument(
        "--export-method",
        choices=["tracing"],
        default="tracing",
        help="how the model is captured: tracing (detectron2's TracingAdapter, on "
        "--sample-image), the only method these models support (detectron2's scripting "
        "needs scriptable models; theirs take and return detectron2 structures)",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder that gets model.ts or model.onnx"
    )
    parser.add_argument(
        "--sample-image",
        metavar="FILE",
        default=None,
        help="image to trace the model on (default: the first shapes_val image)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth; last on "
        "the command line (they take the rest of it)",
    )
    return parser


def _error(error: Exception) -> int:
    print(f"export_model.py: error: {error}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="tensormask_proj")
    cfg = setup_cfg(args.config_file, args.opts)
    try:
        # Traced on MODEL.DEVICE: a TorchScript trace runs on the device it was traced on (it
        # records where tensors are created); the ONNX file is device-independent.
        check_device(cfg)
        check_weights(cfg)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        return _error(e)
    try:
        if not cfg.MODEL.WEIGHTS:
            logger.warning("MODEL.WEIGHTS is empty: exporting a randomly initialised model")
        model = build_model(cfg)
        AtomicDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        image = sample_image(cfg, args.sample_image).to(cfg.MODEL.DEVICE)
        path = export_model(model, image, args.format, args.output, args.export_method)
    except (ExportError, FileNotFoundError, ValueError) as e:
        return _error(e)
    logger.info(f"Wrote {path} (traced on a {tuple(image.shape)} image)")
    if args.format == "torchscript":
        logger.info(
            "Load it with: import torch, torchvision; "
            f"torch.ops.load_library('{op_library_path()}'); torch.jit.load('{path}')"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
