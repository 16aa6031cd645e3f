#!/usr/bin/env python
"""
Benchmark of the swap_align2nat op on the 12 tensors of the official TensorMask bipyramid head
at an 800x1088 (padded) input: window sizes 11 and 15, lambda = 1, 2, 4, 8, 16, 32, each on the
200x272 P2 grid. Prints, all measured in this one run (machines here are noisy, so compare the
ratios, not the absolute times):

  (a) the compiled op, forward and backward,
  (b) the pure-PyTorch reference (swap_align2nat_reference), forward and backward,
  (c) torch.full of the same output sizes (the cost of just writing the output),
  (d) swap_align2nat_at, forward and backward, for 100 windows per tensor at random positions
      (the detections of one image at inference; training's positives are of that order),

and the ratios a/b and a/c, by the median and by the best of the rounds (the timings of every
round are interleaved). On a machine with a GPU it prints the same figures for CUDA, in
milliseconds.

With --official-csrc DIR (the `projects/TensorMask/tensormask/layers/csrc` folder of a detectron2
checkout) it also builds detectron2's official CUDA op from that folder with
torch.utils.cpp_extension (nothing of it is kept in this repository) and, on CUDA, times its
forward and backward in the same interleaved rounds, prints the largest difference between its
outputs and gradients and ours, and the ratios ours / official.

Usage: python benchmarks/swap_align2nat.py [--repeats 7] [--threads N] [--skip-reference]
       [--cuda-only] [--official-csrc DIR]
"""
import argparse
import os
import statistics
import tempfile
import time

import torch

from tensormask_proj.layers import swap_align2nat, swap_align2nat_at, swap_align2nat_reference

WINDOW_SIZES = (11, 15)
LAMBDAS = (1, 2, 4, 8, 16, 32)
GRID = (200, 272)  # P2 grid of an 800x1088 padded input
WINDOWS_AT = 100  # requested windows per tensor for swap_align2nat_at


def make_inputs(device, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    cases = []
    for lam in LAMBDAS:
        for s in WINDOW_SIZES:
            x = torch.randn(1, s * s, *GRID, generator=gen, dtype=dtype).to(device)
            cases.append((lam, x))
    return cases


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_interleaved(fns, device, repeats):
    """Wall times in seconds of every round of each fn in `fns` (a dict), after one warm-up call
    each. The functions take turns within every round, so that a change in the machine's load
    affects all of them alike and their ratios stay meaningful on a noisy machine."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def build_official(csrc):
    """detectron2's official SwapAlign2Nat extension (CUDA only), compiled from ``csrc``."""
    from torch.utils.cpp_extension import load

    sources = [
        os.path.join(csrc, "vision.cpp"),
        os.path.join(csrc, "SwapAlign2Nat", "SwapAlign2Nat_cuda.cu"),
    ]
    missing = [p for p in sources if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"--official-csrc {csrc}: missing {', '.join(missing)}")
    build_dir = tempfile.mkdtemp(prefix="official_swap_align2nat_")
    t0 = time.perf_counter()
    try:
        module = load(
            name="official_swap_align2nat",
            sources=sources,
            extra_cflags=["-O3", "-DWITH_CUDA"],
            extra_cuda_cflags=["-O3", "-DWITH_CUDA"],
            build_directory=build_dir,
            verbose=False,
        )
    except RuntimeError as e:
        # Our own figures are still worth printing when the official sources do not build.
        print(f"could not build the official op from {csrc}; compared without it:")
        print("\n".join(str(e).splitlines()[-6:]))
        return None
    print(f"built the official op from {csrc} in {time.perf_counter() - t0:.0f} s")
    return module


def compare_official(official, cases, grads):
    """Largest |ours - official| over the 12 tensors, for the outputs and for the gradients."""
    out_diff = grad_diff = 0.0
    for (lam, x), g in zip(cases, grads):
        ours = swap_align2nat(x, lam)
        theirs = official.swap_align2nat_forward(x, lam, -6.0)
        out_diff = max(out_diff, (ours - theirs).abs().max().item())
        del ours, theirs
        ours = torch.ops.tensormask_proj.swap_align2nat_backward(g, lam, list(x.shape))
        theirs = official.swap_align2nat_backward(g, lam, *x.shape)
        grad_diff = max(grad_diff, (ours - theirs).abs().max().item())
    return out_diff, grad_diff


def bench_device(device, repeats, with_reference, official=None):
    cases = make_inputs(device)
    outputs = [swap_align2nat(x, lam) for lam, x in cases]
    out_bytes = sum(o.numel() * o.element_size() for o in outputs)
    grads = [torch.randn_like(o) for o in outputs]
    shapes = [o.shape for o in outputs]
    del outputs

    def op_forward():
        for lam, x in cases:
            swap_align2nat(x, lam)

    def op_backward():
        for (lam, x), g in zip(cases, grads):
            torch.ops.tensormask_proj.swap_align2nat_backward(g, lam, list(x.shape))

    def full():
        for shape in shapes:
            torch.full(shape, -6.0, device=device)

    def ref_forward():
        with torch.no_grad():
            for lam, x in cases:
                swap_align2nat_reference(x, lam)

    def ref_backward():
        # Backward only: the forward graph is rebuilt outside the timed region, one case at a
        # time to bound memory.
        total = 0.0
        for (lam, x), g in zip(cases, grads):
            xr = x.detach().requires_grad_()
            y = swap_align2nat_reference(xr, lam)
            sync(device)
            t0 = time.perf_counter()
            y.backward(g)
            sync(device)
            total += time.perf_counter() - t0
            del y, xr
        return total

    # swap_align2nat_at: WINDOWS_AT random positions of the coarse grid of each tensor.
    gen = torch.Generator().manual_seed(1)
    requests = []
    for (lam, x), shape in zip(cases, shapes):
        ys = torch.randint(0, shape[2], (WINDOWS_AT,), generator=gen)
        xs = torch.randint(0, shape[3], (WINDOWS_AT,), generator=gen)
        ids = torch.zeros(WINDOWS_AT, dtype=torch.int64)
        requests.append([t.to(device) for t in (ids, ys * lam, xs * lam)])
    at_grads = [
        torch.randn(WINDOWS_AT, shape[1], generator=gen).view(WINDOWS_AT, -1).to(device)
        for shape in shapes
    ]

    def at_forward():
        for (lam, x), req in zip(cases, requests):
            swap_align2nat_at(x, *req, lam)

    def at_backward():
        for (lam, x), req, g in zip(cases, requests, at_grads):
            v_out = round(g.shape[1] ** 0.5)
            torch.ops.tensormask_proj.swap_align2nat_at_backward(
                g.view(-1, v_out, v_out), *req, lam, list(x.shape)
            )

    fns = {
        "op forward": op_forward,
        "op backward": op_backward,
        "torch.full": full,
        "at forward": at_forward,
        "at backward": at_backward,
    }
    if official is not None:

        def official_forward():
            for lam, x in cases:
                official.swap_align2nat_forward(x, lam, -6.0)

        def official_backward():
            for (lam, x), g in zip(cases, grads):
                official.swap_align2nat_backward(g, lam, *x.shape)

        fns["official forward"] = official_forward
        fns["official backward"] = official_backward
    times = timed_interleaved(fns, device, repeats)
    if with_reference:
        # Slow (tens of seconds): timed once, without a warm-up.
        t0 = time.perf_counter()
        ref_forward()
        times["reference forward"] = [time.perf_counter() - t0]
        times["reference backward"] = [ref_backward()]
    unit, scale = ("s", 1.0) if device.type == "cpu" else ("ms", 1000.0)
    print(
        f"\n== {device.type.upper()} ({torch.get_num_threads()} threads)"
        if device.type == "cpu"
        else f"\n== {torch.cuda.get_device_name(device)}"
    )
    print(
        f"12 tensors, output {out_bytes / 1e6:.0f} MB (float32), {repeats} interleaved rounds; "
        f"swap_align2nat_at: {WINDOWS_AT} windows per tensor"
    )
    print(f"  {'':22s} {'median':>9s} {'best':>9s}  ({unit})")
    for name, values in times.items():
        med, best = statistics.median(values) * scale, min(values) * scale
        print(f"  {name:22s} {med:9.3g} {best:9.3g}")
    for stat_name, stat in (("median", statistics.median), ("best", min)):
        full_t = stat(times["torch.full"])
        forward, backward = stat(times["op forward"]), stat(times["op backward"])
        print(
            f"  {stat_name:6s} a/c forward (op / torch.full) {forward / full_t:5.2f}"
            f"   a/c backward {backward / full_t:5.2f}   (target <= 3)"
        )
    if with_reference:
        for name in ("forward", "backward"):
            ratio = min(times[f"op {name}"]) / times[f"reference {name}"][0]
            print(f"  a/b {name} (op best / reference) {ratio:.3f}")
    if official is not None:
        for stat_name, stat in (("median", statistics.median), ("best", min)):
            print(
                f"  {stat_name:6s} ours / official: forward "
                f"{stat(times['op forward']) / stat(times['official forward']):5.2f}   backward "
                f"{stat(times['op backward']) / stat(times['official backward']):5.2f}"
                "   (target: backward <= 1)"
            )
        out_diff, grad_diff = compare_official(official, cases, grads)
        print(f"  max |ours - official|: outputs {out_diff:.3g}, gradients {grad_diff:.3g}")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--cuda-only", action="store_true")
    parser.add_argument(
        "--official-csrc",
        metavar="DIR",
        help="detectron2's projects/TensorMask/tensormask/layers/csrc: compare with its CUDA op",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}")
    if not args.cuda_only:
        bench_device(torch.device("cpu"), args.repeats, not args.skip_reference)
    if torch.cuda.is_available():
        official = build_official(args.official_csrc) if args.official_csrc else None
        bench_device(
            torch.device("cuda"), max(args.repeats, 10), not args.skip_reference, official
        )
    else:
        print("\n(no GPU visible: CUDA figures skipped)")


if __name__ == "__main__":
    main()
