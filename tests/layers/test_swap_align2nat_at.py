"""
Tests of the swap_align2nat_at op (natural windows at requested centres) against the dense
swap_align2nat op and the pure-PyTorch reference. Every backward case runs with the CPU-only
scatter ("default" kernels) and with the gather shared with CUDA ("shared"): a CPU run checks the
CUDA kernels' arithmetic and indexing. CUDA cases run where a GPU is visible.
"""

import itertools
import unittest

import torch

from tensormask_proj import _ext
from tensormask_proj.layers import (
    swap_align2nat,
    swap_align2nat_at,
    swap_align2nat_at_reference,
    swap_align2nat_reference,
    use_kernels,
)

from .raw_op_checks import raw_op_errors

HAS_CUDA = torch.cuda.is_available()
# The backward kernels: "tiled" only changes the dense forward.
BACKWARD_KERNELS = ("default", "shared")


def every_position(batch, h_out, w_out, lambda_val, device="cpu"):
    """Requests (image_ids, rows, cols) for every output position of the dense op."""
    images = torch.arange(batch, device=device).repeat_interleave(h_out * w_out)
    ys = torch.arange(h_out, device=device).repeat_interleave(w_out).repeat(batch)
    xs = torch.arange(w_out, device=device).repeat(h_out * batch)
    return images, ys, xs


def dense_windows(dense, images, ys, xs):
    side = round(dense.shape[1] ** 0.5)
    return dense[images, :, ys, xs].reshape(-1, side, side)


def random_requests(n, batch, h, w, gen, margin=3):
    """n centres anywhere on (and a little beyond) an h x w map, duplicates allowed, unsorted."""
    images = torch.randint(0, batch, (n,), generator=gen)
    rows = torch.randint(-margin, h + margin, (n,), generator=gen)
    cols = torch.randint(-margin, w + margin, (n,), generator=gen)
    return images, rows, cols


def reference_backward(x, requests, lambda_val, grad):
    """The reference's input gradient (float64 autograd) for window gradients ``grad``."""
    xr = x.detach().double().requires_grad_(True)
    out = swap_align2nat_at_reference(xr, *requests, lambda_val)
    (expected,) = torch.autograd.grad(out, xr, grad.double())
    return expected


def at_backward(grad, requests, lambda_val, shape):
    return torch.ops.tensormask_proj.swap_align2nat_at_backward(
        grad, *requests, lambda_val, list(shape)
    )


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatAtTest(unittest.TestCase):
    # (V, lambda, H, W): odd and even Vout, sizes not divisible by lambda, 1x1 windows.
    CASES = [
        (1, 1, 3, 4),
        (3, 1, 7, 9),
        (4, 1, 6, 5),
        (2, 2, 7, 4),
        (3, 2, 9, 9),
        (2, 3, 10, 9),
        (3, 4, 16, 15),
        (1, 8, 17, 23),
        (2, 8, 9, 16),
    ]

    def test_equals_the_dense_op_at_every_position(self):
        gen = torch.Generator().manual_seed(0)
        for (v, lam, h, w), pad in itertools.product(self.CASES, (-6.0, 1.5)):
            with self.subTest(v=v, lam=lam, h=h, w=w, pad=pad):
                x = torch.randn(2, v * v, h, w, generator=gen, dtype=torch.float64)
                dense = swap_align2nat(x, lam, pad)
                images, ys, xs = every_position(2, *dense.shape[-2:], lam)
                out = swap_align2nat_at(x, images, ys * lam, xs * lam, lam, pad)
                self.assertEqual(out.shape, (len(ys), v * lam, v * lam))
                torch.testing.assert_close(
                    out, dense_windows(dense, images, ys, xs), atol=1e-12, rtol=0
                )

    def test_equals_the_reference_at_any_centre(self):
        # Centres off the lambda grid and outside the map (the crop case), duplicates.
        gen = torch.Generator().manual_seed(1)
        for v, lam, h, w in self.CASES:
            with self.subTest(v=v, lam=lam, h=h, w=w):
                x = torch.randn(3, v * v, h, w, generator=gen, dtype=torch.float64)
                req = random_requests(17, 3, h, w, gen)
                torch.testing.assert_close(
                    swap_align2nat_at(x, *req, lam, -6.0),
                    swap_align2nat_at_reference(x, *req, lam, -6.0),
                    atol=1e-12,
                    rtol=0,
                )

    def test_crop_with_shifted_centres(self):
        # A crop that holds every row/column read by the windows gives the same windows.
        x = torch.randn(1, 9, 20, 24, dtype=torch.float64)
        lam, r0, c0 = 2, 5, 7
        rows, cols = torch.tensor([12, 14]), torch.tensor([16, 18])  # reads rows 9..17, 13..21
        images = torch.zeros(2, dtype=torch.int64)
        full = swap_align2nat_at(x, images, rows, cols, lam)
        crop = x[:, :, r0:, c0:]  # non-contiguous
        torch.testing.assert_close(swap_align2nat_at(crop, images, rows - r0, cols - c0, lam), full)

    def test_float32_half_bfloat16(self):
        x = torch.randn(2, 16, 9, 11)
        req = random_requests(9, 2, 9, 11, torch.Generator().manual_seed(2))
        expected = swap_align2nat_at_reference(x.double(), *req, 2).float()
        torch.testing.assert_close(swap_align2nat_at(x, *req, 2), expected, atol=1e-5, rtol=0)
        for dtype, atol in ((torch.float16, 2e-2), (torch.bfloat16, 1e-1)):
            out = swap_align2nat_at(x.to(dtype), *req, 2)
            self.assertEqual(out.dtype, dtype)
            torch.testing.assert_close(out.float(), expected, atol=atol, rtol=1e-2)

    def test_empty_requests_and_empty_map(self):
        none = torch.zeros(0, dtype=torch.int64)
        for kernels in BACKWARD_KERNELS:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                x = torch.randn(2, 4, 5, 6, requires_grad=True)
                out = swap_align2nat_at(x, none, none, none, 2)
                self.assertEqual(out.shape, (0, 4, 4))
                out.sum().backward()
                self.assertTrue(torch.equal(x.grad, torch.zeros_like(x)))
                grad = at_backward(
                    torch.zeros(2, 4, 4), [torch.tensor([0, 1])] * 3, 2, (2, 4, 0, 6)
                )
                self.assertEqual(grad.shape, (2, 4, 0, 6))
        # A map with no rows: every corner is outside it, so every cell is pad.
        flat = torch.randn(1, 4, 0, 6)
        out = swap_align2nat_at(flat, torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), 1)
        self.assertTrue(torch.equal(out, torch.full((1, 2, 2), -6.0)))

    def test_non_contiguous_inputs(self):
        base = torch.randn(2, 11, 9, 4, dtype=torch.float64)
        x = base.permute(0, 3, 2, 1)[:, :, :, ::2]  # (2, 4, 9, 6)
        self.assertFalse(x.is_contiguous())
        images, cols = torch.tensor([0, 1, 1, 0]), torch.tensor([2, 5, 0, 9])
        rows = torch.tensor([3, -1, 0, -1, 8, -1, 5, -1])[::2]  # [3, 0, 8, 5], stride 2
        self.assertFalse(rows.is_contiguous())
        torch.testing.assert_close(
            swap_align2nat_at(x, images, rows, cols, 2),
            swap_align2nat_at_reference(x.contiguous(), images, rows, cols, 2),
        )


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatAtGradTest(unittest.TestCase):
    # (V, lambda, H, W): odd and even Vout, odd sizes, lambda larger than the map.
    CASES = SwapAlign2NatAtTest.CASES + [(2, 5, 7, 11), (3, 16, 6, 9)]

    def test_gradcheck_float64(self):
        gen = torch.Generator().manual_seed(3)
        cases = ((1, 1, 3, 4), (3, 1, 5, 4), (2, 2, 5, 4), (2, 3, 6, 5), (1, 4, 3, 5))
        for (v, lam, h, w), kernels in itertools.product(cases, BACKWARD_KERNELS):
            with self.subTest(v=v, lam=lam, kernels=kernels), use_kernels(kernels):
                x = torch.randn(2, v * v, h, w, dtype=torch.float64, requires_grad=True)
                req = random_requests(6, 2, h, w, gen, margin=1)
                self.assertTrue(
                    torch.autograd.gradcheck(lambda t: swap_align2nat_at(t, *req, lam), (x,))
                )
                self.assertTrue(
                    torch.autograd.gradgradcheck(lambda t: swap_align2nat_at(t, *req, lam), (x,))
                )

    def test_backward_matches_the_reference(self):
        # Random centres on and off the map and off the lambda lattice (several residues),
        # duplicates, images unsorted.
        gen = torch.Generator().manual_seed(7)
        for v, lam, h, w in self.CASES:
            x = torch.randn(3, v * v, h, w, generator=gen, dtype=torch.float64)
            req = random_requests(29, 3, h, w, gen, margin=v * lam // 2 + 2)
            g = torch.randn(29, v * lam, v * lam, generator=gen, dtype=torch.float64)
            expected = reference_backward(x, req, lam, g)
            for kernels in BACKWARD_KERNELS:
                with self.subTest(v=v, lam=lam, h=h, w=w, kernels=kernels), use_kernels(kernels):
                    got = at_backward(g, req, lam, x.shape)
                    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)

    def test_lattice_requests_of_a_crop(self):
        # The bipyramid's requests: unique positions of the coarse grid, centres y * lambda minus
        # a crop origin (one residue class), for every position of two images.
        gen = torch.Generator().manual_seed(8)
        for v, lam, origin in ((3, 2, 1), (2, 4, 3), (2, 8, 5)):
            x = torch.randn(2, v * v, 19, 23, generator=gen, dtype=torch.float64)
            images, ys, xs = every_position(2, 30 // lam, 35 // lam, lam)
            req = (images, ys * lam - origin, xs * lam - origin)
            g = torch.randn(len(ys), v * lam, v * lam, generator=gen, dtype=torch.float64)
            expected = reference_backward(x, req, lam, g)
            for kernels in BACKWARD_KERNELS:
                with self.subTest(v=v, lam=lam, kernels=kernels), use_kernels(kernels):
                    torch.testing.assert_close(
                        at_backward(g, req, lam, x.shape), expected, atol=1e-12, rtol=0
                    )

    def test_duplicate_requests_add_up(self):
        x = torch.randn(2, 9, 8, 7, dtype=torch.float64)
        one = (torch.tensor([1]), torch.tensor([3]), torch.tensor([4]))
        three = tuple(t.repeat(3) for t in one)
        g = torch.randn(1, 6, 6, dtype=torch.float64)
        for kernels in BACKWARD_KERNELS:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                single = at_backward(g, one, 2, x.shape)
                tripled = at_backward(g.repeat(3, 1, 1), three, 2, x.shape)
                torch.testing.assert_close(tripled, 3 * single, atol=1e-12, rtol=0)

    def test_windows_reading_pad_only_get_no_gradient(self):
        # Centres so far from the map that every cell reads pad, mixed with one that reads it.
        x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
        far = (torch.tensor([0, 1, 0]), torch.tensor([-9, 3, 40]), torch.tensor([2, 60, -20]))
        g = torch.randn(3, 4, 4, dtype=torch.float64)
        mixed = tuple(torch.cat([t, torch.tensor([v])]) for t, v in zip(far, (1, 2, 2)))
        g_mixed = torch.cat([g, torch.randn(1, 4, 4, dtype=torch.float64)])
        for kernels in BACKWARD_KERNELS:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                self.assertTrue(torch.equal(at_backward(g, far, 2, x.shape), torch.zeros_like(x)))
                torch.testing.assert_close(
                    at_backward(g_mixed, mixed, 2, x.shape),
                    reference_backward(x, mixed, 2, g_mixed),
                    atol=1e-12,
                    rtol=0,
                )

    def test_backward_equals_the_dense_op_backward(self):
        # The windows of every position, weighted by a gradient, back-propagate like the dense op.
        x = torch.randn(2, 9, 8, 7, dtype=torch.float64, requires_grad=True)
        for lam, kernels in itertools.product((1, 2, 3), BACKWARD_KERNELS):
            with self.subTest(lam=lam, kernels=kernels), use_kernels(kernels):
                dense = swap_align2nat(x, lam)
                g = torch.randn_like(dense)
                (expected,) = torch.autograd.grad(dense, x, g)
                images, ys, xs = every_position(2, *dense.shape[-2:], lam)
                out = swap_align2nat_at(x, images, ys * lam, xs * lam, lam)
                (got,) = torch.autograd.grad(out, x, dense_windows(g, images, ys, xs))
                torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)

    def test_backward_non_contiguous_and_low_precision(self):
        gen = torch.Generator().manual_seed(9)
        req = random_requests(11, 2, 9, 6, gen)
        g_base = torch.randn(8, 8, 11, generator=gen, dtype=torch.float64)
        g = g_base.permute(2, 0, 1)  # (11, 8, 8), non-contiguous
        ids, rows, cols = (torch.stack([t, t], 1)[:, 0] for t in req)  # strided requests
        self.assertFalse(g.is_contiguous() or rows.is_contiguous())
        expected = reference_backward(torch.zeros(2, 16, 9, 6), req, 2, g)
        for kernels in BACKWARD_KERNELS:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                got = at_backward(g, (ids, rows, cols), 2, (2, 16, 9, 6))
                torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
                for dtype, atol in (
                    (torch.float32, 1e-5),
                    (torch.float16, 2e-2),
                    (torch.bfloat16, 1e-1),
                ):
                    low = at_backward(g.to(dtype), req, 2, (2, 16, 9, 6))
                    self.assertEqual(low.dtype, dtype)
                    torch.testing.assert_close(low.double(), expected, atol=atol, rtol=1e-2)

    def test_default_and_shared_backward_agree(self):
        # A larger map, many requests on the lambda lattice and off it.
        gen = torch.Generator().manual_seed(10)
        x = torch.randn(2, 25, 40, 52, generator=gen)
        req = random_requests(300, 2, 40, 52, gen)
        g = torch.randn(300, 15, 15, generator=gen)
        with use_kernels("default"):
            scatter = at_backward(g, req, 3, x.shape)
        with use_kernels("shared"):
            gather = at_backward(g, req, 3, x.shape)
        torch.testing.assert_close(gather, scatter, atol=1e-5, rtol=1e-5)

    def test_backward_is_deterministic_whatever_the_thread_count(self):
        gen = torch.Generator().manual_seed(11)
        req = random_requests(200, 2, 30, 33, gen)
        g = torch.randn(200, 12, 12, generator=gen)
        threads = torch.get_num_threads()
        for kernels in BACKWARD_KERNELS:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                first = at_backward(g, req, 4, (2, 9, 30, 33))
                again = at_backward(g, req, 4, (2, 9, 30, 33))
                torch.set_num_threads(1)
                try:
                    one_thread = at_backward(g, req, 4, (2, 9, 30, 33))
                finally:
                    torch.set_num_threads(threads)
                self.assertTrue(torch.equal(first, again))
                self.assertTrue(torch.equal(first, one_thread))

    def test_opcheck(self):
        gen = torch.Generator().manual_seed(4)
        cases = ((1, (2, 9, 5, 6)), (2, (1, 4, 7, 5)), (3, (2, 1, 4, 4)))
        for (lam, shape), kernels in itertools.product(cases, BACKWARD_KERNELS):
            with self.subTest(lam=lam, kernels=kernels), use_kernels(kernels):
                x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
                req = random_requests(5, shape[0], *shape[2:], gen)
                torch.library.opcheck(
                    torch.ops.tensormask_proj.swap_align2nat_at, (x, *req, lam, -6.0)
                )
                y = swap_align2nat_at(x, *req, lam)
                torch.library.opcheck(
                    torch.ops.tensormask_proj.swap_align2nat_at_backward,
                    (torch.randn_like(y), *req, lam, list(shape)),
                )


# Raw-op calls with bad input and the message each must raise (also run on CUDA tensors).
_MAP = "torch.randn(2, 4, 5, 5, device=dev)"
_IDX = "torch.tensor([0, 1], device=dev)"
RAW_OP_CASES = [
    (
        f"ops.swap_align2nat_at(torch.randn(1, 5, 4, 4, device=dev), {_IDX}, {_IDX}, {_IDX}, "
        "1, -6.0)",
        "swap_align2nat_at: the channel count must be a perfect square",
    ),
    (
        f"ops.swap_align2nat_at({_MAP}, {_IDX}.int(), {_IDX}, {_IDX}, 1, -6.0)",
        "image_ids must be a 1-D int64 tensor, got Int",
    ),
    (
        f"ops.swap_align2nat_at({_MAP}, {_IDX}, {_IDX}[None], {_IDX}, 1, -6.0)",
        r"rows must be a 1-D int64 tensor, got Long of shape \[1, 2\]",
    ),
    (
        f"ops.swap_align2nat_at({_MAP}, {_IDX}, {_IDX}, {_IDX}[:1], 1, -6.0)",
        "must have one length, got 2, 2 and 1",
    ),
    (
        f"ops.swap_align2nat_at({_MAP}, {_IDX}, {_IDX}, {_IDX}, 0, -6.0)",
        "lambda_val must be >= 1, got 0",
    ),
    (
        f"ops.swap_align2nat_at_backward(torch.randn(2, 3, 3, device=dev), {_IDX}, {_IDX}, {_IDX}, "
        "1, [2, 4, 5, 5])",
        "grad_output has shape",
    ),
    (
        f"ops.swap_align2nat_at({_MAP}, torch.tensor([0, 2], device=dev), {_IDX}, {_IDX}, 1, -6.0)",
        r"swap_align2nat_at: image_ids\[1\] = 2 is out of range for a map of 2 images",
    ),
    (
        f"ops.swap_align2nat_at_backward(torch.randn(2, 2, 2, device=dev), "
        f"torch.tensor([-1, 0], device=dev), {_IDX}, {_IDX}, 1, [2, 4, 5, 5])",
        r"swap_align2nat_at_backward: image_ids\[0\] = -1 is out of range for a map of 2 images",
    ),
    (
        f"ops.swap_align2nat_at_backward(torch.randn(2, 2, 2, device=dev), {_IDX}, {_IDX}, {_IDX}, "
        "1, [2, 4, 5])",
        r"input_size must be \(N, C, H, W\)",
    ),
]


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatAtBadInputTest(unittest.TestCase):
    def test_python_checks(self):
        x = torch.randn(2, 4, 5, 5)
        i = torch.tensor([0, 1])
        with self.assertRaisesRegex(TypeError, "rows must be a 1-D int64 tensor, got torch.int32"):
            swap_align2nat_at(x, i, i.int(), i, 1)
        with self.assertRaisesRegex(ValueError, "must have one length, got 2, 1 and 2"):
            swap_align2nat_at(x, i, i[:1], i, 1)
        with self.assertRaisesRegex(ValueError, "swap_align2nat_at: the channel count"):
            swap_align2nat_at(torch.randn(1, 3, 4, 4), i, i, i, 1)
        with self.assertRaisesRegex(TypeError, "lambda_val must be an int"):
            swap_align2nat_at(x, i, i, i, 1.0)

    def test_cpp_checks_name_the_problem(self):
        raw_op_errors(self, "cpu", RAW_OP_CASES, BACKWARD_KERNELS)


@unittest.skipIf(not (HAS_CUDA and _ext.has_ops()), "needs a CUDA GPU")
class SwapAlign2NatAtCUDATest(unittest.TestCase):
    CASES = ((1, 1, 3, 4), (11, 1, 9, 12), (15, 2, 9, 13), (2, 3, 10, 9), (3, 8, 24, 31))

    def test_cuda_matches_cpu(self):
        # CUDA (the shared kernels) against both CPU backward kernels; random centres with
        # duplicates and off-lattice residues.
        gen = torch.Generator().manual_seed(5)
        for (v, lam, h, w), dtype in itertools.product(self.CASES, (torch.float32, torch.float64)):
            x = torch.randn(2, v * v, h, w, generator=gen, dtype=dtype)
            req = random_requests(23, 2, h, w, gen, margin=v * lam // 2 + 2)
            g = torch.randn(23, v * lam, v * lam, generator=gen, dtype=dtype)
            atol = 1e-5 if dtype == torch.float32 else 1e-12
            xc = x.cuda().requires_grad_(True)
            yc = swap_align2nat_at(xc, *(t.cuda() for t in req), lam)
            yc.backward(g.cuda())
            for kernels in BACKWARD_KERNELS:
                with self.subTest(v=v, lam=lam, dtype=dtype, kernels=kernels):
                    with use_kernels(kernels):
                        xh = x.clone().requires_grad_(True)
                        yh = swap_align2nat_at(xh, *req, lam)
                        yh.backward(g)
                    torch.testing.assert_close(yc.detach().cpu(), yh.detach(), atol=atol, rtol=0)
                    torch.testing.assert_close(xc.grad.cpu(), xh.grad, atol=atol * 10, rtol=0)

    def test_cuda_backward_on_lattice_requests(self):
        # Many unique positions of a crop, as the bipyramid requests them.
        gen = torch.Generator().manual_seed(12)
        x = torch.randn(2, 225, 40, 52, generator=gen, dtype=torch.float64)
        images, ys, xs = every_position(2, 20, 26, 2)
        keep = torch.randperm(len(ys), generator=gen)[:500]
        req = (images[keep], ys[keep] * 2 - 1, xs[keep] * 2 - 1)
        g = torch.randn(500, 30, 30, generator=gen, dtype=torch.float64)
        with use_kernels("shared"):
            expected = at_backward(g, req, 2, x.shape)
        got = at_backward(g.cuda(), [t.cuda() for t in req], 2, x.shape)
        torch.testing.assert_close(got.cpu(), expected, atol=1e-12, rtol=0)

    def test_cuda_gradcheck_opcheck_deterministic_empty(self):
        x = torch.randn(2, 4, 5, 6, device="cuda", dtype=torch.float64, requires_grad=True)
        req = [t.cuda() for t in random_requests(7, 2, 5, 6, torch.Generator().manual_seed(6))]
        self.assertTrue(torch.autograd.gradcheck(lambda t: swap_align2nat_at(t, *req, 2), (x,)))
        torch.library.opcheck(torch.ops.tensormask_proj.swap_align2nat_at, (x, *req, 2, -6.0))
        y = swap_align2nat_at(x.float(), *req, 3)
        g = torch.randn_like(y)
        (g1,) = torch.autograd.grad(y, x, g, retain_graph=True)
        (g2,) = torch.autograd.grad(y, x, g)
        self.assertTrue(torch.equal(g1, g2))
        none = torch.zeros(0, dtype=torch.int64, device="cuda")
        self.assertEqual(swap_align2nat_at(x, none, none, none, 2).shape, (0, 4, 4))
        half = swap_align2nat_at(x.half(), *req, 2).float()
        expected = swap_align2nat_at(x.float(), *req, 2)
        torch.testing.assert_close(half, expected, atol=2e-2, rtol=1e-2)

    def test_cuda_raw_op_errors(self):
        raw_op_errors(self, "cuda", RAW_OP_CASES)


class SwapAlign2NatAtReferenceTest(unittest.TestCase):
    def test_hand_computed_and_dense_reference(self):
        # V = 1, lambda = 2, X = [[1, 2], [3, 4]], pad -6: the window centred at (0, 0) is the
        # dense op's output (y, x) = (0, 0), computed by hand in test_swap_align2nat.py:
        # [[-5.015625, -3.890625], [-3.75, -1.21875]].
        x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
        zero = torch.tensor([0])
        out = swap_align2nat_at_reference(x, zero, zero, zero, 2)
        expected = torch.tensor([[[-5.015625, -3.890625], [-3.75, -1.21875]]], dtype=torch.float64)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
        y = torch.randn(2, 9, 7, 5, dtype=torch.float64)
        dense = swap_align2nat_reference(y, 3)
        images, ys, xs = every_position(2, *dense.shape[-2:], 3)
        torch.testing.assert_close(
            swap_align2nat_at_reference(y, images, ys * 3, xs * 3, 3),
            dense_windows(dense, images, ys, xs),
        )


if __name__ == "__main__":
    unittest.main()
