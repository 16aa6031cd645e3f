#!/usr/bin/env python
"""
Seconds per training iteration of a config, float32 vs bfloat16 CPU autocast (SOLVER.AMP), on
the same pre-loaded batches (10 timed iterations after 2 warm-up ones, SGD, lr 0.001).

Usage: python benchmarks/train_step.py CONFIG [--iters 12] [opts ...]
  e.g. python benchmarks/train_step.py configs/quick_schedules/blendmask_R_18_GN_FPN_shapes.yaml
"""
import argparse
import time

import torch


def seconds_per_iteration(config_file, amp, iters, opts):
    from detectron2.data import build_detection_train_loader
    from detectron2.modeling import build_model

    from tensormask_proj import get_project_cfg
    from tensormask_proj.data import BlendMaskDatasetMapper, prepare_dataset
    from tensormask_proj.engine import cpu_autocast

    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts) + ["SOLVER.AMP.ENABLED", amp, "MODEL.DEVICE", "cpu"])
    prepare_dataset(cfg.DATASETS.TRAIN[0], progress=False)
    is_blendmask = cfg.MODEL.META_ARCHITECTURE == "BlendMask"
    mapper = BlendMaskDatasetMapper(cfg, True) if is_blendmask else None
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loader = iter(build_detection_train_loader(cfg, mapper=mapper))
    batches = [next(loader) for _ in range(iters)]
    for i, data in enumerate(batches):
        if i == 2:
            start = time.perf_counter()
        with cpu_autocast(cfg):
            loss = sum(model(data).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / (iters - 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config_file")
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    for amp in (False, True):
        seconds = seconds_per_iteration(args.config_file, amp, args.iters, args.opts)
        print(f"{'bfloat16 autocast' if amp else 'float32':18s} {seconds:.3f} s/iteration")


if __name__ == "__main__":
    main()
