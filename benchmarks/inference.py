#!/usr/bin/env python
"""
Inference speed and memory on one 800x1067 image (CPU by default), all models in this one run:

  * detectron2's Mask R-CNN R50-FPN (the reference point),
  * TensorMask R50-FPN (configs/TensorMask/tensormask_R_50_FPN_1x.yaml) with dense mask windows
    (MODEL.TENSOR_MASK.SPARSE_WINDOWS False, as the official code) and sparse ones (the default),
  * BlendMask R50 (configs/BlendMask/R_50_1x.yaml),

each with random weights (nothing can be downloaded here) and thresholds at 0 / NMS off so that
every model keeps exactly 100 detections (checked). Random weights without trained normalisation
give exploding features and degenerate boxes (Mask R-CNN's RPN then collapses to 2 proposals
covering the image, FCOS's boxes to points), which would make the RoI, NMS and mask-pasting
work unrealistically small or large. So the box-regression layers are set to predict no offset
(boxes = anchors / proposals; FCOS: a constant 4 strides on each side of the location), which
gives every model the anchors' realistic spread of box sizes and its full amount of work. Each
model runs in its own subprocess so that its peak memory (max RSS) is its own; the image is the
same (seeded). Also times BlendMask's blender alone for 100 instances. Prints seconds per image
(best of --repeats after a warm-up) and the ratios to Mask R-CNN.

Usage: python benchmarks/inference.py [--repeats 3] [--device cpu] [--models a,b,...]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZE = (800, 1067)
DETECTIONS = 100

# name -> (config file, opts of the variant). Every model keeps exactly DETECTIONS detections:
# score threshold 0 and NMS at IoU 1 (every_detection_opts), DETECTIONS per image.
MODELS = {
    "mask_rcnn": ("detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", []),
    "tensormask_dense": (
        "configs/TensorMask/tensormask_R_50_FPN_1x.yaml",
        ["MODEL.TENSOR_MASK.SPARSE_WINDOWS", "False"],
    ),
    "tensormask_sparse": (
        "configs/TensorMask/tensormask_R_50_FPN_1x.yaml",
        ["MODEL.TENSOR_MASK.SPARSE_WINDOWS", "True"],
    ),
    "blendmask": ("configs/BlendMask/R_50_1x.yaml", []),
}


def every_detection_opts(cfg):
    """The opts that keep every candidate of cfg's architecture: its test-time score threshold
    0 and its NMS at IoU 1 (the keys of tensormask_proj.engine.architectures)."""
    from tensormask_proj.engine import architecture_of

    arch = architecture_of(cfg)
    return [arch.score_threshold_key, "0.0", arch.nms_threshold_key, "1.0"]


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_cfg(name, device):
    from detectron2 import model_zoo

    from tensormask_proj.engine import setup_cfg

    config_file, opts = MODELS[name]
    if config_file.startswith("detectron2://"):
        config_file = model_zoo.get_config_file(config_file[len("detectron2://") :])
    else:
        config_file = os.path.join(REPO, config_file)
    opts = opts + ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device]
    opts += ["TEST.DETECTIONS_PER_IMAGE", str(DETECTIONS)]
    cfg = setup_cfg(config_file, opts, freeze=False)
    cfg.merge_from_list(every_detection_opts(cfg))
    cfg.freeze()
    return cfg


def worker(name, device, repeats, out_path):
    import torch
    from detectron2.modeling import build_model

    import tensormask_proj  # noqa: F401  (first: silences detectron2's FutureWarning)

    torch.manual_seed(0)
    cfg = build_cfg(name, device)
    model = build_model(cfg).eval()
    neutral_box_regression(model, name)
    gen = torch.Generator().manual_seed(123)
    image = torch.randint(0, 256, (3, *IMAGE_SIZE), generator=gen, dtype=torch.uint8)
    inputs = [{"image": image.to(device), "height": IMAGE_SIZE[0], "width": IMAGE_SIZE[1]}]
    rss_model = max_rss_mb()

    def run():
        with torch.no_grad():
            out = model(inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    out = run()  # warm-up
    detections = len(out[0]["instances"])
    if detections != DETECTIONS:
        raise RuntimeError(f"{name}: {detections} detections, expected {DETECTIONS}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    result = {
        "name": name,
        "seconds": min(times),
        "all_seconds": times,
        "detections": detections,
        "peak_rss_mb": max_rss_mb(),
        "rss_after_build_mb": rss_model,
        "threads": torch.get_num_threads(),
    }
    if name == "blendmask":
        result["blender_seconds"] = time_blender(model, device, repeats)
    with open(out_path, "w") as f:
        json.dump(result, f)


def neutral_box_regression(model, name):
    """Zero the box-regression outputs (see the module docstring)."""
    import torch

    if name == "mask_rcnn":
        layers = [
            model.proposal_generator.rpn_head.anchor_deltas,
            model.roi_heads.box_predictor.bbox_pred,
        ]
    elif name.startswith("tensormask"):
        layers = [model.head.bbox_pred]
    elif name == "blendmask":
        layers = [model.proposal_generator.fcos_head.bbox_pred]
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
            layer.bias.fill_(4.0 if name == "blendmask" else 0.0)


def time_blender(model, device, repeats):
    """The blender alone (ROIAlign of the bases + attention blending) for 100 instances."""
    import torch
    from detectron2.structures import Boxes, Instances

    gen = torch.Generator().manual_seed(7)
    h, w = 800, 1088  # padded input
    bases = [torch.randn(1, 4, h // 4, w // 4, generator=gen).to(device)]
    xy = torch.rand(DETECTIONS, 2, generator=gen) * torch.tensor([w * 0.8, h * 0.8])
    wh = torch.rand(DETECTIONS, 2, generator=gen) * 300 + 8
    boxes = torch.cat([xy, xy + wh], dim=1).to(device)
    top_feat = torch.randn(DETECTIONS, 4 * 14 * 14, generator=gen).to(device)
    scores = torch.rand(DETECTIONS, generator=gen).to(device)
    best = float("inf")
    for _ in range(repeats + 1):
        proposals = Instances((h, w), pred_boxes=Boxes(boxes), top_feat=top_feat, scores=scores)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.blender.predict(bases, [proposals])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    assert proposals.mask_probs.shape == (DETECTIONS, 1, 56, 56)
    return best


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs; the best is kept (default: 3)"
    )
    parser.add_argument(
        "--device", default="cpu", help="MODEL.DEVICE of every model: cpu (default) or cuda"
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (default: all)",
    )
    # Internal: one model's measurement in a process of its own, its results written to OUTPUT.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.worker:
        worker(args.worker, args.device, args.repeats, args.output)
        return

    import tempfile

    import torch

    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    print(
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
        f"image {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, {DETECTIONS} detections, best of {args.repeats}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = os.path.join(tmp, f"{name}.json")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                name,
                "--device",
                args.device,
                "--repeats",
                str(args.repeats),
                "--output",
                out,
            ]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name}: FAILED\n{proc.stderr[-3000:]}")
                continue
            with open(out) as f:
                results[name] = json.load(f)
    base = results.get("mask_rcnn")
    # GPU times are tens of milliseconds: milliseconds with 3 significant digits there.
    unit, scale = ("s/image", 1.0) if args.device == "cpu" else ("ms/image", 1000.0)
    print(
        f"\n{'model':<20s} {unit:>8s} {'x Mask R-CNN':>13s} {'peak RSS MB':>12s} "
        f"{'(after build)':>14s}"
    )
    for name, r in results.items():
        ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
        time_text = f"{r['seconds']:8.2f}" if scale == 1.0 else f"{r['seconds'] * scale:8.3g}"
        print(
            f"{name:<20s} {time_text} {ratio:>13s} {r['peak_rss_mb']:12.0f} "
            f"{r['rss_after_build_mb']:14.0f}"
        )
    if "blendmask" in results:
        print(
            f"\nBlendMask blender alone, {DETECTIONS} instances: "
            f"{results['blendmask']['blender_seconds'] * 1e3:.1f} ms"
        )
    if "tensormask_dense" in results and "tensormask_sparse" in results:
        d, s = results["tensormask_dense"], results["tensormask_sparse"]
        print(f"TensorMask sparse / dense time: {s['seconds'] / d['seconds']:.2f}")


if __name__ == "__main__":
    main()
