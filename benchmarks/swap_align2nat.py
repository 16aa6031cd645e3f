#!/usr/bin/env python
"""
Benchmark of the swap_align2nat and swap_align2nat_at ops, on the CPU and, where a GPU is
visible, on CUDA, in three parts (--sections). The first two are timed in interleaved rounds
(machines here are noisy: compare the ratios, not the absolute times), median and best:

bipyramid: the 12 tensors of the official TensorMask bipyramid head at an 800x1088 (padded)
  input, window sizes 11 and 15, lambda = 1, 2, 4, 8, 16, 32, each on the 200x272 P2 grid:
  (a) the dense op, forward and backward, with each kernel choice (--kernels; see
      tensormask_proj.layers.use_kernels: "default", "shared", "tiled"),
  (b) the pure-PyTorch reference (swap_align2nat_reference), forward and backward, once,
  (c) torch.full of the same output sizes (the cost of just writing the output),
  (d) swap_align2nat_at, forward and backward, for 100 windows per tensor at random positions,
  and the ratios a/c and a/b.

level: swap_align2nat_at's backward on one COCO-sized level, the bipyramid's level-1 tensor of
  two images (V = 15, lambda = 2, a 200x272 map, windows centred on the 100x136 P3 grid) with
  16, 256 and 4096 requests at distinct positions, against the dense backward of the same map,
  with the default and the shared kernels. The shared backward gathers per element of the map
  over requests bucketed by centre, so its cost should stay about that of the dense backward
  whatever the number of requests (target: at most 3x at 4096 requests).

compare (CUDA only): every op on CUDA against the CPU running the same shared kernels, on the
  level's tensors and a lambda = 8 one: the largest differences of the outputs and gradients,
  and whether two CUDA runs give identical gradients (deterministic).

With --official-csrc DIR (the `projects/TensorMask/tensormask/layers/csrc` folder of a detectron2
checkout) it also builds detectron2's official CUDA op from that folder with
torch.utils.cpp_extension (nothing of it is kept in this repository) and, on CUDA, times its
forward and backward in the same rounds, prints the largest difference between its outputs and
gradients and ours, and the ratios ours / official.
"""

import argparse
import os
import statistics
import tempfile
import time

import torch

from tensormask_proj.layers import (
    KERNEL_CHOICES,
    swap_align2nat,
    swap_align2nat_at,
    swap_align2nat_reference,
    use_kernels,
)

WINDOW_SIZES = (11, 15)
LAMBDAS = (1, 2, 4, 8, 16, 32)
GRID = (200, 272)  # P2 grid of an 800x1088 padded input
WINDOWS_AT = 100  # requested windows per tensor for swap_align2nat_at
LEVEL = dict(images=2, window=15, lambda_val=2)  # the bipyramid's level-1 (P3) tensor
LEVEL_REQUESTS = (16, 256, 4096)

_ops = torch.ops.tensormask_proj


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_interleaved(fns, device, repeats):
    """
    Wall times in seconds of every round of each entry of ``fns``, a dict name -> (kernel
    choice, function), after one warm-up call each. The functions take turns within every round,
    so that a change in the machine's load affects all of them alike and their ratios stay
    meaningful on a noisy machine.
    """
    for kernels, fn in fns.values():
        with use_kernels(kernels):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (kernels, fn) in fns.items():
            with use_kernels(kernels):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def print_times(times, device, header):
    unit, scale = ("s", 1.0) if device.type == "cpu" else ("ms", 1000.0)
    print(header)
    print(f"  {'':34s} {'median':>9s} {'best':>9s}  ({unit})")
    for name, values in times.items():
        print(f"  {name:34s} {statistics.median(values) * scale:9.3g} {min(values) * scale:9.3g}")


def device_title(device):
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    return torch.cuda.get_device_name(device)


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
        ours = _ops.swap_align2nat_backward(g, lam, list(x.shape))
        theirs = official.swap_align2nat_backward(g, lam, *x.shape)
        grad_diff = max(grad_diff, (ours - theirs).abs().max().item())
    return out_diff, grad_diff


def bench_bipyramid(device, repeats, kernels, with_reference, official=None):
    gen = torch.Generator().manual_seed(0)
    cases = [
        (lam, torch.randn(1, s * s, *GRID, generator=gen).to(device))
        for lam in LAMBDAS
        for s in WINDOW_SIZES
    ]
    shapes = [swap_align2nat(x, lam).shape for lam, x in cases]
    out_bytes = sum(torch.Size(s).numel() * 4 for s in shapes)
    grads = [torch.randn(s, generator=gen).to(device) for s in shapes]

    def dense_forward():
        for lam, x in cases:
            swap_align2nat(x, lam)

    def dense_backward():
        for (lam, x), g in zip(cases, grads):
            _ops.swap_align2nat_backward(g, lam, list(x.shape))

    def full():
        for shape in shapes:
            torch.full(shape, -6.0, device=device)

    # swap_align2nat_at: WINDOWS_AT random positions of the coarse grid of each tensor.
    requests, at_grads = [], []
    for (lam, x), shape in zip(cases, shapes):
        ys = torch.randint(0, shape[2], (WINDOWS_AT,), generator=gen)
        xs = torch.randint(0, shape[3], (WINDOWS_AT,), generator=gen)
        ids = torch.zeros(WINDOWS_AT, dtype=torch.int64)
        requests.append([t.to(device) for t in (ids, ys * lam, xs * lam)])
        v_out = round(shape[1] ** 0.5)
        at_grads.append(torch.randn(WINDOWS_AT, v_out, v_out, generator=gen).to(device))

    def at_forward():
        for (lam, x), req in zip(cases, requests):
            swap_align2nat_at(x, *req, lam)

    def at_backward():
        for (lam, x), req, g in zip(cases, requests, at_grads):
            _ops.swap_align2nat_at_backward(g, *req, lam, list(x.shape))

    fns = {"torch.full": ("default", full)}
    for k in kernels:
        fns[f"op forward, {k}"] = (k, dense_forward)
    for k in kernels:
        if k != "tiled":  # the tiled kernel is a forward; its backward is the shared one
            fns[f"op backward, {k}"] = (k, dense_backward)
    fns["at forward"] = ("default", at_forward)
    for k in kernels:
        if k != "tiled":
            fns[f"at backward, {k}"] = (k, at_backward)
    if official is not None:

        def official_forward():
            for lam, x in cases:
                official.swap_align2nat_forward(x, lam, -6.0)

        def official_backward():
            for (lam, x), g in zip(cases, grads):
                official.swap_align2nat_backward(g, lam, *x.shape)

        fns["official forward"] = ("default", official_forward)
        fns["official backward"] = ("default", official_backward)
    times = timed_interleaved(fns, device, repeats)
    if with_reference:
        # Slow (tens of seconds on a CPU): timed once, without a warm-up; backward only, with
        # the forward graph built outside the timed region one case at a time to bound memory.
        t0 = time.perf_counter()
        with torch.no_grad():
            for lam, x in cases:
                swap_align2nat_reference(x, lam)
        times["reference forward"] = [time.perf_counter() - t0]
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
        times["reference backward"] = [total]
    print_times(
        times,
        device,
        f"\n== bipyramid, {device_title(device)}: 12 tensors, output {out_bytes / 1e6:.0f} MB "
        f"(float32), {repeats} interleaved rounds; swap_align2nat_at: {WINDOWS_AT} windows per "
        "tensor",
    )
    full_t = statistics.median(times["torch.full"])
    for name in [n for n in times if n.startswith("op ")]:
        print(
            f"  {name:34s} {statistics.median(times[name]) / full_t:5.2f} x torch.full "
            "(median; target <= 3)"
        )
    if with_reference:
        for part in ("forward", "backward"):
            ratio = min(times[f"op {part}, {kernels[0]}"]) / times[f"reference {part}"][0]
            print(f"  op {part}, {kernels[0]} (best) / reference: {ratio:.3f}")
    if official is not None:
        for part in ("forward", "backward"):
            ours = statistics.median(times[f"op {part}, {kernels[0]}"])
            theirs = statistics.median(times[f"official {part}"])
            print(f"  ours ({kernels[0]}) / official, {part}: {ours / theirs:5.2f} (median)")
        out_diff, grad_diff = compare_official(official, cases, grads)
        print(f"  max |ours - official|: outputs {out_diff:.3g}, gradients {grad_diff:.3g}")


def level_requests(count, height, width, lambda_val, images, gen, device):
    """``count`` distinct positions of the coarse grid of ``images`` maps, as window centres."""
    coarse_h, coarse_w = -(-height // lambda_val), -(-width // lambda_val)
    position = torch.randperm(images * coarse_h * coarse_w, generator=gen)[:count]
    image_ids = position // (coarse_h * coarse_w)
    rows = (position % (coarse_h * coarse_w)) // coarse_w * lambda_val
    cols = position % coarse_w * lambda_val
    return [t.to(device) for t in (image_ids, rows, cols)]


def bench_level(device, repeats, kernels):
    images, v, lam = LEVEL["images"], LEVEL["window"], LEVEL["lambda_val"]
    height, width = GRID
    shape = [images, v * v, height, width]
    gen = torch.Generator().manual_seed(1)
    dense_grad = torch.randn(
        images, (v * lam) ** 2, -(-height // lam), -(-width // lam), generator=gen
    ).to(device)
    kernels = [k for k in kernels if k != "tiled"]
    fns = {}
    for k in kernels:
        fns[f"dense backward, {k}"] = (
            k,
            lambda: _ops.swap_align2nat_backward(dense_grad, lam, shape),
        )
    for count in LEVEL_REQUESTS:
        req = level_requests(count, height, width, lam, images, gen, device)
        grad = torch.randn(count, v * lam, v * lam, generator=gen).to(device)
        for k in kernels:
            fns[f"at backward, {count} requests, {k}"] = (
                k,
                lambda req=req, grad=grad: _ops.swap_align2nat_at_backward(grad, *req, lam, shape),
            )
    times = timed_interleaved(fns, device, repeats)
    print_times(
        times,
        device,
        f"\n== level, {device_title(device)}: {images} images, V={v}, lambda={lam}, a "
        f"{height}x{width} map, requests at distinct positions, {repeats} interleaved rounds",
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        "  at backward / dense backward of the same map (medians), at "
        f"{', '.join(map(str, LEVEL_REQUESTS))} requests:"
    )
    for at_k in kernels:
        for dense_k in kernels:
            ratios = [
                median[f"at backward, {count} requests, {at_k}"]
                / median[f"dense backward, {dense_k}"]
                for count in LEVEL_REQUESTS
            ]
            # The target compares the shared kernels (on CUDA "default" runs them).
            shared = "shared" if device.type == "cpu" else "default"
            note = "   (target <= 3 at 4096)" if at_k == dense_k == shared else ""
            print(
                f"    at {at_k:8s} / dense {dense_k:8s} "
                + " ".join(f"{r:6.2f}" for r in ratios)
                + note
            )


def bench_compare(device, kernels):
    """Largest |CUDA - CPU| of every op (CPU with the shared kernels), and CUDA determinism."""
    gen = torch.Generator().manual_seed(2)
    height, width = GRID
    print(f"\n== compare, {device_title(device)} against the CPU's shared kernels (float32)")
    for v, lam, count in ((LEVEL["window"], LEVEL["lambda_val"], 4096), (11, 8, 300)):
        x = torch.randn(LEVEL["images"], v * v, height, width, generator=gen)
        req = level_requests(count, height, width, lam, LEVEL["images"], gen, "cpu")
        dense_grad = torch.randn(swap_align2nat(x, lam).shape, generator=gen)
        at_grad = torch.randn(count, v * lam, v * lam, generator=gen)
        shape = list(x.shape)
        xc, dense_grad_c, at_grad_c = x.to(device), dense_grad.to(device), at_grad.to(device)
        req_c = [t.to(device) for t in req]
        ops = {
            "forward": (
                lambda: swap_align2nat(x, lam),
                lambda: swap_align2nat(xc, lam),
            ),
            "backward": (
                lambda: _ops.swap_align2nat_backward(dense_grad, lam, shape),
                lambda: _ops.swap_align2nat_backward(dense_grad_c, lam, shape),
            ),
            "at forward": (
                lambda: swap_align2nat_at(x, *req, lam),
                lambda: swap_align2nat_at(xc, *req_c, lam),
            ),
            "at backward": (
                lambda: _ops.swap_align2nat_at_backward(at_grad, *req, lam, shape),
                lambda: _ops.swap_align2nat_at_backward(at_grad_c, *req_c, lam, shape),
            ),
        }
        for k in kernels:
            for name, (cpu_fn, cuda_fn) in ops.items():
                if k == "tiled" and name != "forward":
                    continue
                with use_kernels("tiled" if k == "tiled" else "shared"):
                    expected = cpu_fn()
                with use_kernels(k):
                    first, second = cuda_fn(), cuda_fn()
                diff = (first.cpu() - expected).abs().max().item()
                same = torch.equal(first, second)
                print(
                    f"  V={v:2d} lambda={lam} {count:4d} requests  {name:11s} {k:8s} max |CUDA - "
                    f"CPU| {diff:.3g}, CUDA runs identical: {same}"
                )


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("bipyramid", "level", "compare"),
        default=["bipyramid", "level", "compare"],
        help="which parts to run (default: all; compare runs on CUDA only)",
    )
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=KERNEL_CHOICES,
        default=None,
        help="kernel choices to time (tensormask_proj.layers.use_kernels); default: all three on "
        "the CPU, default and tiled on CUDA (where default runs the shared kernels)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved rounds per device (default 5)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="do not time the pure-PyTorch reference (slow on a CPU)",
    )
    parser.add_argument(
        "--cuda-only", action="store_true", help="time CUDA only (on a machine with a GPU)"
    )
    parser.add_argument(
        "--official-csrc",
        metavar="DIR",
        help="detectron2's projects/TensorMask/tensormask/layers/csrc: compare with its CUDA op",
    )
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}")
    devices = [] if args.cuda_only else [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.cuda_only:
        raise SystemExit("--cuda-only: no GPU visible")
    for device in devices:
        kernels = args.kernels or (
            list(KERNEL_CHOICES) if device.type == "cpu" else ["default", "tiled"]
        )
        repeats = args.repeats if device.type == "cpu" else max(args.repeats, 10)
        if "bipyramid" in args.sections:
            official = None
            if device.type == "cuda" and args.official_csrc:
                official = build_official(args.official_csrc)
            bench_bipyramid(device, repeats, kernels, not args.skip_reference, official)
        if "level" in args.sections:
            bench_level(device, repeats, kernels)
        if "compare" in args.sections and device.type == "cuda":
            bench_compare(device, kernels)
    if not torch.cuda.is_available():
        print("\n(no GPU visible: CUDA figures skipped)")


if __name__ == "__main__":
    main()
