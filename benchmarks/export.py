#!/usr/bin/env python
"""
Inference time of the exported models next to the PyTorch model, in one run: TensorMask (the
quick config: tensor bipyramid, ResNet-18) and BlendMask (the quick shapes config) on the first
embedded validation image at the config's test size (or --min-size), each forced to keep exactly
100 detections as in benchmarks/inference.py (random weights, score threshold 0, NMS at IoU 1,
neutral box regression; checked for every runtime):

  * pytorch:      the model itself (``model([{"image": ...}])``, sparse mask windows);
  * torchscript:  tools/export_model.py's TorchScript file (``torch.jit.load``);
  * onnxruntime:  its ONNX file in an onnxruntime CPU session with the same thread count.

Seconds per image, best of --repeats after a warm-up, the runtimes interleaved in each round (so
that load from other jobs affects them alike). Where a CUDA GPU is visible, the PyTorch and
TorchScript models are also timed on it (milliseconds, 3 significant digits); the onnxruntime
package installed here is the CPU one.

Usage: python benchmarks/export.py [--repeats 5] [--threads 2] [--models tensormask,blendmask]
       [--min-size 800]
"""

import argparse
import os
import sys
import tempfile
import time

# First: importing tensormask_proj silences the FutureWarning that importing detectron2 prints.
import tensormask_proj  # noqa: F401

# isort: split
import onnxruntime
import torch
from detectron2.modeling import build_model

from tensormask_proj.engine import setup_cfg
from tensormask_proj.export import export_model, sample_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from inference import DETECTIONS, every_detection_opts, neutral_box_regression  # noqa: E402

# name -> (config file, opts of the model besides inference.every_detection_opts)
MODELS = {
    "tensormask": ("configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml", []),
    "blendmask": (
        "configs/quick_schedules/blendmask_R_18_GN_FPN_shapes.yaml",
        ["MODEL.FCOS.POST_NMS_TOPK_TEST", str(DETECTIONS)],
    ),
}


def build(name, min_size):
    config_file, opts = MODELS[name]
    opts = opts + [
        "MODEL.WEIGHTS",
        "",
        "MODEL.DEVICE",
        "cpu",
        "TEST.DETECTIONS_PER_IMAGE",
        str(DETECTIONS),
    ]
    if min_size:
        opts += ["INPUT.MIN_SIZE_TEST", str(min_size), "INPUT.MAX_SIZE_TEST", str(min_size * 2)]
    cfg = setup_cfg(os.path.join(REPO, config_file), opts, freeze=False)
    cfg.merge_from_list(every_detection_opts(cfg))
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    neutral_box_regression(model, name)
    return cfg, model


def best_times(runs, repeats, synchronize=lambda: None):
    """{name: best seconds} of ``runs`` ({name: fn returning the detection count})."""
    for name, run in runs.items():  # warm-up, and every runtime keeps all detections
        count = run()
        if count != DETECTIONS:
            raise RuntimeError(f"{name}: {count} detections, expected {DETECTIONS}")
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize()
            start = time.perf_counter()
            run()
            synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def cpu_runs(model, image, out_dir, threads):
    scripted = torch.jit.load(export_model(model, image, "torchscript", out_dir))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # onnxruntime's threads otherwise busy-wait after each run, which slows the runtime timed
    # next on the same cores (seen: PyTorch 5x slower right after onnxruntime on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        export_model(model, image, "onnx", out_dir), options, providers=["CPUExecutionProvider"]
    )
    feed = {"image": image.numpy()}

    def pytorch():
        with torch.no_grad():
            return len(model([{"image": image}])[0]["instances"])

    def torchscript():
        with torch.no_grad():
            return len(scripted(image)[0])

    def onnx_runtime():
        return len(session.run(None, feed)[0])

    return {"pytorch": pytorch, "torchscript": torchscript, "onnxruntime": onnx_runtime}


def gpu_runs(model, image, out_dir):
    model = model.to("cuda")
    image = image.to("cuda")
    # Traced on the GPU: a trace records the device of the tensors it creates.
    scripted = torch.jit.load(export_model(model, image, "torchscript", out_dir))

    def pytorch():
        with torch.no_grad():
            return len(model([{"image": image}])[0]["instances"])

    def torchscript():
        with torch.no_grad():
            return len(scripted(image)[0])

    return {"pytorch": pytorch, "torchscript": torchscript}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed rounds; the best is kept (default: 5)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads of torch and of the onnxruntime session (default: 2)",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (default: both)",
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=0,
        help="test size INPUT.MIN_SIZE_TEST (default: the config's)",
    )
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    gpu = torch.cuda.is_available()
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, CPU "
        f"{args.threads} threads, {DETECTIONS} detections, best of {args.repeats}\n"
    )
    header = f"{'model':<11} {'image':>9} {'pytorch s':>10} {'torchscript s':>14} "
    print(header + f"{'onnxruntime s':>14} {'ts/pt':>6} {'ort/pt':>7}")
    gpu_rows = []
    for name in names:
        cfg, model = build(name, args.min_size)
        image = sample_image(cfg)
        size = "x".join(str(s) for s in image.shape[-2:])
        with tempfile.TemporaryDirectory() as out_dir:
            t = best_times(cpu_runs(model, image, out_dir, args.threads), args.repeats)
            print(
                f"{name:<11} {size:>9} {t['pytorch']:>10.3f} {t['torchscript']:>14.3f} "
                f"{t['onnxruntime']:>14.3f} {t['torchscript'] / t['pytorch']:>6.2f} "
                f"{t['onnxruntime'] / t['pytorch']:>7.2f}"
            )
            if gpu:
                t = best_times(
                    gpu_runs(model, image, out_dir), args.repeats, torch.cuda.synchronize
                )
                gpu_rows.append(
                    f"{name:<11} {size:>9} {t['pytorch'] * 1e3:>11.3g} "
                    f"{t['torchscript'] * 1e3:>15.3g}"
                )
    if gpu:
        print(f"\nGPU ({torch.cuda.get_device_name()})")
        print(f"{'model':<11} {'image':>9} {'pytorch ms':>11} {'torchscript ms':>15}")
        print("\n".join(gpu_rows))
    else:
        print("\n(no GPU visible: GPU figures skipped)")


if __name__ == "__main__":
    main()
