#!/usr/bin/env python
"""
Where TensorMask R50-FPN's inference time goes, on the image and with the 100 forced detections
of benchmarks/inference.py: the whole forward, backbone + FPN, classification towers (and P2's
alone), box towers, and top-k + NMS + mask windows, each timed separately (best of 3 after a
warm-up; "rest" is the total minus the parts: pre-processing and mask pasting).

Usage: python benchmarks/tensormask_stages.py [tensormask_sparse|tensormask_dense]
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inference as bench  # noqa: E402  (same models, image and neutralised box regressions)

MODELS = ("tensormask_sparse", "tensormask_dense")


def best_of(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "model",
        nargs="?",
        choices=MODELS,
        default=MODELS[0],
        help="sparse (the default: mask windows at the detections only) or dense mask windows",
    )
    return parser


def main(argv=None):
    name = get_parser().parse_args(argv).model
    from detectron2.modeling import build_model

    import tensormask_proj  # noqa: F401  (first: silences detectron2's FutureWarning)

    torch.manual_seed(0)
    model = build_model(bench.build_cfg(name, "cpu")).eval()
    bench.neutral_box_regression(model, name)
    gen = torch.Generator().manual_seed(123)
    image = torch.randint(0, 256, (3, *bench.IMAGE_SIZE), generator=gen, dtype=torch.uint8)
    inputs = [{"image": image, "height": bench.IMAGE_SIZE[0], "width": bench.IMAGE_SIZE[1]}]
    head = model.head
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        feats = [features[f] for f in model.head_in_features]
        predictions = head(feats)
        total = best_of(lambda: model(inputs))
        backbone = best_of(lambda: model.backbone(images.tensor))
        cls = best_of(lambda: [head.cls_score(head.cls_subnet(x)) for x in feats])
        cls_p2 = best_of(lambda: head.cls_score(head.cls_subnet(feats[0])))
        box = best_of(lambda: [head.bbox_pred(head.bbox_subnet(x)) for x in feats])
        windows = best_of(lambda: model.forward_inference(images, feats, predictions))
    rest = total - backbone - cls - box - windows
    print(
        f"{name} ({torch.get_num_threads()} threads): total {total:.2f} s, backbone+FPN "
        f"{backbone:.2f}, cls towers {cls:.2f} (P2 {cls_p2:.2f}), box towers {box:.2f}, "
        f"top-k/NMS/mask windows {windows:.2f}, rest (pre-processing, dense masks, pasting) "
        f"{rest:.2f}"
    )


if __name__ == "__main__":
    main()
