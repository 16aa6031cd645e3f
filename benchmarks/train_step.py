#!/usr/bin/env python
"""
Cost of one training iteration (the inner trainer's ``run_step`` of train_net.py's trainer:
forward, backward, the losses logged, the config's SGD step; batch of the config) of the
TensorMask quick config against detectron2's Mask R-CNN with the same backbone, data, image size
and batch (configs/Baselines/mask_rcnn_R_18_GN_FPN_shapes.yaml), measured in one run:

* ATen operator calls per iteration, counted on the CPU with a TorchDispatchMode (each call is a
  kernel launch plus dispatcher and Python overhead on a GPU, whatever the tensor sizes);
* time per iteration on the CPU (seconds) and, when a GPU is visible, on the GPU (milliseconds,
  3 significant digits; data loading excluded, batches pre-loaded);

and the ratios TensorMask / Mask R-CNN (target: at most 1.5 for both). The timed iterations
follow 2 warm-up ones; each model gets the same pre-loaded batches.

Usage: python benchmarks/train_step.py [CONFIG ...] [--iters 6] [--amp] [--top 12] [--profile]
  CONFIG: config files to compare, the last one being the reference (default: the two above);
  --amp: bfloat16 autocast on the CPU (GPU timings stay float32); run with and without to compare.
    Unlike train_net.py, which falls back to float32 on a CPU without native bfloat16, this
    measures autocast on any CPU (the header says whether this one has native bfloat16).
  --profile: also profile the timed iterations on the CPU (torch.profiler) and print each
    config's share of self CPU time spent in convolutions (forward and backward) and its
    costliest ops.
"""

import argparse
import collections
import os
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = [
    os.path.join(ROOT, "configs", "quick_schedules", "tensormask_R_18_GN_FPN_shapes.yaml"),
    os.path.join(ROOT, "configs", "Baselines", "mask_rcnn_R_18_GN_FPN_shapes.yaml"),
]


class OpCounter(TorchDispatchMode):
    """Counts the ATen operator calls that reach the dispatcher's backend kernels."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def build(config_file, device, amp):
    """
    (the training iterations, the training loader) of ``config_file`` on ``device``: the
    model, optimizer, learning rate and loader of the package's :class:`Trainer`, and its inner
    trainer's ``run_step`` as the iteration. ``amp`` (bool): bfloat16 autocast on a CPU; a GPU
    trains in float32 either way.
    """
    # (First: importing tensormask_proj silences detectron2's FutureWarning.)
    from tensormask_proj.data import prepare_dataset
    from tensormask_proj.engine import CPUAutocastTrainer, Trainer, inner_trainer_class, setup_cfg

    cpu_amp = amp and torch.device(device).type == "cpu"
    cfg = setup_cfg(config_file, ["SOLVER.AMP.ENABLED", cpu_amp, "MODEL.DEVICE", device])
    prepare_dataset(cfg.DATASETS.TRAIN[0], progress=False)
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    # The first iteration's learning rate (the warm-up's start), as in train_net.py: these
    # iterations measure cost, and the full rate could diverge from random weights.
    Trainer.build_lr_scheduler(cfg, optimizer)
    # bfloat16 CPU autocast whenever asked, even where train_net.py would fall back to float32
    # (see tensormask_proj/engine/cpu_autocast.py): this benchmark measures what it costs.
    trainer_class = CPUAutocastTrainer if cpu_amp else inner_trainer_class(cfg)
    return Iterations(trainer_class, model, optimizer), Trainer.build_train_loader(cfg)


class Iterations:
    """Training iterations of the package's inner trainer (``run_step``: forward, losses,
    backward, the logged metrics, the optimizer step) over pre-loaded batches."""

    def __init__(self, trainer_class, model, optimizer):
        self.trainer_class, self.model, self.optimizer = trainer_class, model, optimizer

    def run(self, batches):
        """One iteration per batch of ``batches`` (a list): detectron2's ``TrainerBase.train``
        loop (no hooks) of the inner trainer."""
        self.trainer_class(self.model, batches, self.optimizer).train(0, len(batches))


def measure(config_file, device, iters, amp, count_ops, profile=False):
    """
    (seconds per iteration, ATen calls per iteration or None, top ops, profile lines) on
    ``device``; the profile lines are empty unless ``profile``.
    """
    iterations, loader = build(config_file, device, amp)
    stream = iter(loader)
    batches = [next(stream) for _ in range(iters + 2)]
    del stream  # (its DataLoader workers, if any, stop before the timing)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    iterations.run(batches[:2])
    sync()
    start = time.perf_counter()
    iterations.run(batches[2:])
    sync()
    seconds = (time.perf_counter() - start) / iters
    calls, top = None, []
    if count_ops:
        with OpCounter() as counter:
            iterations.run(batches[2:])
        calls = sum(counter.counts.values()) / iters
        top = [(name, n / iters) for name, n in counter.counts.most_common()]
    lines = profile_lines(iterations, batches[2:]) if profile else []
    return seconds, calls, top, lines


def profile_lines(iterations, batches, rows=8):
    """Self CPU time of the iterations on ``batches``: the convolutions' share, the costliest
    ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        iterations.run(batches)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
    lines = [f"convolutions (forward and backward): {100 * conv / total:.0f}% of self CPU time"]
    lines += [f"  {e.key:50s} {100 * e.self_cpu_time_total / total:5.1f}%" for e in events[:rows]]
    return lines


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "configs",
        nargs="*",
        default=DEFAULT_CONFIGS,
        metavar="CONFIG",
        help="config files to compare, the last one the reference (default: the TensorMask "
        "quick config and its Mask R-CNN baseline)",
    )
    parser.add_argument(
        "--iters", type=int, default=6, help="timed iterations, after 2 warm-up ones (default: 6)"
    )
    parser.add_argument("--amp", action="store_true", help="SOLVER.AMP (bfloat16 on the CPU)")
    parser.add_argument("--top", type=int, default=12, help="most frequent ops to list")
    parser.add_argument("--profile", action="store_true", help="CPU time by op (torch.profiler)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    names = [os.path.splitext(os.path.basename(c))[0] for c in args.configs]
    from tensormask_proj.engine import has_native_bfloat16

    native = "native" if has_native_bfloat16() else "emulated: train_net.py would use float32"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.iters} timed "
        f"iterations after 2 warm-up ones, AMP {'on' if args.amp else 'off'} (CPU bfloat16: "
        f"{native})"
    )
    runs = list(zip(names, args.configs))
    cpu = {n: measure(c, "cpu", args.iters, args.amp, True, args.profile) for n, c in runs}
    gpu = {}
    if torch.cuda.is_available():
        gpu = {n: measure(c, "cuda", args.iters, args.amp, False)[0] for n, c in runs}

    print(f"\n{'config':42s} {'ATen calls':>10s} {'CPU s/it':>9s}" + ("  GPU ms/it" if gpu else ""))
    for n in names:
        line = f"{n:42s} {cpu[n][1]:10.0f} {cpu[n][0]:9.3f}"
        if gpu:
            line += f"  {gpu[n] * 1000:9.3g}"
        print(line)
    base = names[-1]
    for n in names[:-1] if len(names) > 1 else []:
        print(f"\n{n} / {base}:")
        print(f"  ATen calls  {cpu[n][1] / cpu[base][1]:.2f}   (target <= 1.5)")
        print(f"  CPU time    {cpu[n][0] / cpu[base][0]:.2f}")
        if gpu:
            print(f"  GPU time    {gpu[n] / gpu[base]:.2f}   (target <= 1.5)")
    if not gpu:
        print("\n(no GPU visible: GPU times skipped)")
    for n in names:
        top = ", ".join(f"{name} {count:.0f}" for name, count in cpu[n][2][: args.top])
        print(f"\nmost frequent ATen ops, {n}: {top}")
        if cpu[n][3]:
            print(f"\nCPU profile, {n}:\n" + "\n".join(cpu[n][3]))


if __name__ == "__main__":
    main()
