"""
Tests of the swap_align2nat op against the pure-PyTorch reference and hand computations.

Every case runs with each kernel choice (``use_kernels``): the CPU-only row kernels ("default"),
the element functions shared with CUDA ("shared") and the tiled forward ("tiled"), so that a CPU
run checks the CUDA kernels' arithmetic and indexing. CUDA cases run where a GPU is visible and
are skipped otherwise.
"""

import itertools
import unittest

import torch

from tensormask_proj import _ext
from tensormask_proj.layers import (
    KERNEL_CHOICES,
    SwapAlign2Nat,
    swap_align2nat,
    swap_align2nat_reference,
    use_kernels,
)

from .raw_op_checks import raw_op_errors

HAS_CUDA = torch.cuda.is_available()


def _close(test, actual, expected, atol, rtol=0.0, msg=""):
    test.assertEqual(actual.shape, expected.shape, msg)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=msg)


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatForwardTest(unittest.TestCase):
    def test_matches_reference_across_shapes(self):
        gen = torch.Generator().manual_seed(0)
        # (V, lambda, H, W): odd/even sizes, sizes not divisible by lambda, every V and lambda
        # of the issue (V in 1, 2, 3, 11, 15; lambda in 1, 2, 3, 4, 8, 32).
        cases = [
            (1, 1, 3, 4),
            (2, 1, 5, 5),
            (3, 1, 4, 7),
            (11, 1, 9, 12),
            (15, 1, 6, 5),
            (1, 2, 5, 6),
            (2, 2, 7, 4),
            (3, 2, 9, 9),
            (11, 2, 8, 11),
            (15, 2, 5, 7),
            (1, 3, 7, 8),
            (2, 3, 10, 9),
            (3, 3, 8, 13),
            (11, 3, 7, 6),
            (2, 4, 9, 13),
            (3, 4, 16, 15),
            (11, 4, 6, 9),
            (1, 8, 17, 23),
            (2, 8, 9, 16),
            (3, 8, 24, 31),
            (1, 32, 40, 33),
            (2, 32, 33, 65),
            (15, 32, 3, 2),
        ]
        for (v, lam, h, w), pad in itertools.product(cases, (-6.0, 0.0, 1.75)):
            x = torch.randn(2, v * v, h, w, generator=gen, dtype=torch.float64)
            expected = swap_align2nat_reference(x, lam, pad)
            self.assertEqual(expected.shape, (2, (lam * v) ** 2, -(-h // lam), -(-w // lam)))
            for kernels in KERNEL_CHOICES:
                with self.subTest(v=v, lam=lam, h=h, w=w, pad=pad, kernels=kernels):
                    with use_kernels(kernels):
                        out = swap_align2nat(x, lam, pad)
                    _close(self, out, expected, atol=1e-12)

    def test_tiled_forward_is_bit_identical_to_shared(self):
        # The tiled kernel sums the same staged values in the same order as the element kernel.
        gen = torch.Generator().manual_seed(3)
        for (v, lam, h, w), dtype in itertools.product(
            (
                (1, 1, 300, 7),
                (3, 1, 5, 600),
                (2, 2, 9, 13),
                (3, 3, 10, 11),
                (15, 2, 6, 7),
                (2, 8, 17, 40),
                (3, 32, 33, 70),
            ),
            (torch.float32, torch.float64, torch.float16),
        ):
            with self.subTest(v=v, lam=lam, h=h, w=w, dtype=dtype):
                x = torch.randn(2, v * v, h, w, generator=gen).to(dtype)
                with use_kernels("shared"):
                    shared = swap_align2nat(x, lam)
                with use_kernels("tiled"):
                    tiled = swap_align2nat(x, lam)
                self.assertTrue(torch.equal(tiled, shared))

    def test_float32_matches_float64(self):
        x = torch.randn(1, 9, 13, 11, dtype=torch.float64)
        for lam, kernels in itertools.product((1, 2, 3, 4), KERNEL_CHOICES):
            with self.subTest(lam=lam, kernels=kernels), use_kernels(kernels):
                _close(self, swap_align2nat(x.float(), lam).double(), swap_align2nat(x, lam), 1e-5)

    def test_half_and_bfloat16(self):
        x = torch.randn(2, 4, 9, 7)
        expected = swap_align2nat(x, 2)
        for (dtype, atol), kernels in itertools.product(
            ((torch.float16, 2e-2), (torch.bfloat16, 1e-1)), KERNEL_CHOICES
        ):
            with self.subTest(dtype=dtype, kernels=kernels), use_kernels(kernels):
                out = swap_align2nat(x.to(dtype), 2)
                self.assertEqual(out.dtype, dtype)
                _close(self, out.float(), expected, atol=atol, rtol=1e-2)
                g = torch.randn(out.shape)
                grad = torch.ops.tensormask_proj.swap_align2nat_backward(
                    g.to(dtype), 2, [2, 4, 9, 7]
                )
                expected_grad = torch.ops.tensormask_proj.swap_align2nat_backward(
                    g, 2, [2, 4, 9, 7]
                )
                self.assertEqual(grad.dtype, dtype)
                _close(self, grad.float(), expected_grad, atol=atol, rtol=1e-2)

    def test_hand_computed_lambda2(self):
        # V = 1, lambda = 2, one 2x2 input plane X = [[1, 2], [3, 4]], pad p = -6.
        # Output: Vout = 2, so 4 channels (v, u), spatial ceil(2/2) = 1, i.e. (1, 4, 1, 1).
        # Window axis: sv = (v + 0.5)/2 - 0.5 = -0.25 (v=0) or 0.25 (v=1): with one input cell
        # (index 0), v=0 mixes 0.25*pad + 0.75*cell0 and v=1 mixes 0.75*cell0 + 0.25*pad.
        # Spatial: sy = y*2 + v - 1 + 0.5 = v - 0.5 -> rows (-1, 0) for v=0, rows (0, 1) for v=1,
        # each with weight 0.5 (likewise columns with u).
        # (v, u) = (1, 1): spatial = mean of X rows 0-1, cols 0-1 = 2.5.
        #   window weights: cell0 0.75 * 0.75 = 0.5625, pad 1 - 0.5625 = 0.4375.
        #   value = 0.5625 * 2.5 + 0.4375 * -6 = 1.40625 - 2.625 = -1.21875.
        # (v, u) = (0, 0): spatial = mean of {p, p, p, X[0][0]=1} = (3*-6 + 1)/4 = -4.25.
        #   value = 0.5625 * -4.25 + 0.4375 * -6 = -2.390625 - 2.625 = -5.015625.
        # (v, u) = (0, 1): rows (-1, 0), cols (0, 1): mean of {p, p, 1, 2} = (-12 + 3)/4 = -2.25.
        #   value = 0.5625 * -2.25 - 2.625 = -1.265625 - 2.625 = -3.890625.
        # (v, u) = (1, 0): rows (0, 1), cols (-1, 0): mean of {p, 1, p, 3} = -2.
        #   value = 0.5625 * -2 - 2.625 = -3.75.
        x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
        expected = torch.tensor([-5.015625, -3.890625, -3.75, -1.21875], dtype=torch.float64)
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                _close(self, swap_align2nat(x, 2, -6.0).reshape(-1), expected, atol=1e-12)

    def test_lambda1_odd_window_is_a_shift(self):
        # lambda = 1 with an odd window is a pure shift: natural(y, x, v, u) =
        # aligned(y + v - (V-1)/2, x + u - (V-1)/2, v, u), pad outside.
        v_size, h, w = 3, 5, 6
        x = torch.randn(1, v_size * v_size, h, w)
        aligned = x.reshape(v_size, v_size, h, w)
        expected = torch.full_like(aligned, -6.0)
        for v, u, y, xx in itertools.product(range(v_size), range(v_size), range(h), range(w)):
            sy, sx = y + v - 1, xx + u - 1
            if 0 <= sy < h and 0 <= sx < w:
                expected[v, u, y, xx] = aligned[v, u, sy, sx]
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                natural = swap_align2nat(x, 1, -6.0).reshape(v_size, v_size, h, w)
                self.assertTrue(torch.equal(natural, expected))

    def test_constant_pad_input_stays_constant(self):
        # Weights sum to one: an input equal to pad everywhere maps to pad everywhere (exactly
        # for power-of-two lambdas, whose weights are dyadic; to rounding for lambda = 3).
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                for lam in (1, 2, 8, 32):
                    out = swap_align2nat(torch.full((1, 4, 9, 10), -6.0), lam, -6.0)
                    self.assertTrue(torch.all(out == -6.0), f"lambda={lam}")
                out = swap_align2nat(torch.full((1, 4, 9, 10), -6.0), 3, -6.0)
                _close(self, out, torch.full_like(out, -6.0), atol=1e-5)

    def test_non_contiguous_input(self):
        base = torch.randn(2, 11, 9, 4, dtype=torch.float64)
        x = base.permute(0, 3, 2, 1)[:, :, :, ::2]  # (2, 4, 9, 6), non-contiguous
        self.assertFalse(x.is_contiguous())
        xr = x.detach().clone().requires_grad_(True)
        expected = swap_align2nat_reference(xr, 2)
        g = torch.randn_like(expected).transpose(2, 3).contiguous().transpose(2, 3)  # strided grad
        self.assertFalse(g.is_contiguous())
        (expected_grad,) = torch.autograd.grad(expected, xr, g)
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                xk = x.detach().requires_grad_(True)
                y = swap_align2nat(xk, 2)
                _close(self, y, expected, atol=1e-12)
                (gx,) = torch.autograd.grad(y, xk, g)
                _close(self, gx, expected_grad, atol=1e-12)

    def test_empty_inputs(self):
        for shape, kernels in itertools.product(
            ((0, 4, 5, 6), (2, 4, 0, 6), (2, 0, 5, 6), (1, 4, 5, 0)), KERNEL_CHOICES
        ):
            with self.subTest(shape=shape, kernels=kernels), use_kernels(kernels):
                x = torch.randn(*shape, requires_grad=True)
                y = swap_align2nat(x, 2)
                self.assertEqual(y.shape, swap_align2nat_reference(x, 2).shape)
                y.sum().backward()
                self.assertEqual(x.grad.shape, x.shape)

    def test_module(self):
        m = SwapAlign2Nat(4, pad_val=-3.0)
        self.assertEqual(repr(m), "SwapAlign2Nat(lambda_val=4, pad_val=-3.0)")
        self.assertEqual(list(m.state_dict()), [])
        x = torch.randn(1, 9, 8, 8)
        _close(self, m(x), swap_align2nat(x, 4, -3.0), atol=0)


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatBadInputTest(unittest.TestCase):
    def test_errors_name_the_problem(self):
        x = torch.randn(1, 9, 4, 4)
        with self.assertRaisesRegex(ValueError, "perfect square.*8 channels"):
            swap_align2nat(torch.randn(1, 8, 4, 4), 2)
        with self.assertRaisesRegex(ValueError, "lambda_val must be >= 1, got 0"):
            swap_align2nat(x, 0)
        with self.assertRaisesRegex(TypeError, "lambda_val must be an int.*2.0"):
            swap_align2nat(x, 2.0)
        with self.assertRaisesRegex(TypeError, "lambda_val must be an int"):
            swap_align2nat(x, True)
        with self.assertRaisesRegex(ValueError, r"4-D input.*\(9, 4, 4\)"):
            swap_align2nat(x[0], 2)
        with self.assertRaisesRegex(TypeError, "floating-point.*torch.int64"):
            swap_align2nat(torch.ones(1, 9, 4, 4, dtype=torch.long), 2)
        with self.assertRaisesRegex(ValueError, "lambda_val must be an int >= 1"):
            SwapAlign2Nat(1.5)

    def test_cpp_checks_name_the_problem(self):
        # The raw dispatcher op (bypassing the Python checks) reports the same problems; in a
        # child process, so that a crash fails this test only.
        raw_op_errors(self, "cpu", RAW_OP_CASES, KERNEL_CHOICES)

    def test_kernel_choice_errors_and_restores(self):
        with self.assertRaisesRegex(ValueError, "unknown kernels 'fast'"):
            with use_kernels("fast"):
                pass
        with self.assertRaisesRegex(RuntimeError, "unknown kernels 'fast'"):
            torch.ops.tensormask_proj._set_kernels("fast")
        with self.assertRaises(KeyError):
            with use_kernels("tiled"):
                raise KeyError("inside")
        # The choice in force is back to the default: setting it returns the previous one.
        self.assertEqual(torch.ops.tensormask_proj._set_kernels("default"), "default")


# Raw-op calls with bad input and the message each must raise (also run on CUDA tensors).
RAW_OP_CASES = [
    ("ops.swap_align2nat(torch.randn(1, 5, 4, 4, device=dev), 1, -6.0)", "perfect square"),
    (
        "ops.swap_align2nat(torch.randn(1, 4, 4, 4, device=dev), -1, -6.0)",
        "lambda_val must be >= 1",
    ),
    (
        "ops.swap_align2nat(torch.ones(1, 4, 4, 4, dtype=torch.int32, device=dev), 1, -6.0)",
        "floating-point",
    ),
    (
        "ops.swap_align2nat_backward(torch.randn(1, 16, 3, 3, device=dev), 2, [1, 4, 4, 4])",
        "grad_output has shape",
    ),
]


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatGradTest(unittest.TestCase):
    def test_gradcheck_float64(self):
        # (The tiled forward equals the shared one bit for bit, tested above.)
        cases = ((1, 1, 3, 4), (2, 2, 5, 4), (3, 3, 4, 5), (2, 4, 6, 5), (3, 1, 5, 3))
        for (v, lam, h, w), kernels in itertools.product(cases, ("default", "shared")):
            with self.subTest(v=v, lam=lam, kernels=kernels), use_kernels(kernels):
                x = torch.randn(2, v * v, h, w, dtype=torch.float64, requires_grad=True)
                self.assertTrue(
                    torch.autograd.gradcheck(lambda t: swap_align2nat(t, lam, -6.0), (x,))
                )

    def test_gradgradcheck_float64(self):
        x = torch.randn(1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
        for kernels in ("default", "shared"):
            with self.subTest(kernels=kernels), use_kernels(kernels):
                self.assertTrue(torch.autograd.gradgradcheck(lambda t: swap_align2nat(t, 2), (x,)))

    def test_backward_matches_reference(self):
        gen = torch.Generator().manual_seed(1)
        cases = ((11, 1, 7, 9), (15, 2, 6, 7), (2, 3, 10, 9), (2, 8, 17, 20), (3, 32, 33, 40))
        for v, lam, h, w in cases:
            x = torch.randn(1, v * v, h, w, generator=gen, dtype=torch.float64)
            xr = x.clone().requires_grad_(True)
            y = swap_align2nat_reference(xr, lam)
            g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
            (expected,) = torch.autograd.grad(y, xr, g)
            for kernels in KERNEL_CHOICES:
                with self.subTest(v=v, lam=lam, kernels=kernels), use_kernels(kernels):
                    got = torch.ops.tensormask_proj.swap_align2nat_backward(g, lam, list(x.shape))
                    _close(self, got, expected, atol=1e-11)

    def test_backward_is_deterministic_whatever_the_thread_count(self):
        x = torch.randn(2, 9, 20, 21)
        g = torch.randn(2, 144, 5, 6)
        threads = torch.get_num_threads()
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                first = torch.ops.tensormask_proj.swap_align2nat_backward(g, 4, list(x.shape))
                again = torch.ops.tensormask_proj.swap_align2nat_backward(g, 4, list(x.shape))
                torch.set_num_threads(1)
                try:
                    one_thread = torch.ops.tensormask_proj.swap_align2nat_backward(
                        g, 4, list(x.shape)
                    )
                finally:
                    torch.set_num_threads(threads)
                self.assertTrue(torch.equal(first, again))
                self.assertTrue(torch.equal(first, one_thread))


@unittest.skipIf(not _ext.has_ops(), "tensormask_proj._C not built")
class SwapAlign2NatDispatcherTest(unittest.TestCase):
    def test_opcheck(self):
        cases = ((1, (2, 9, 5, 6)), (2, (1, 4, 7, 5)), (3, (2, 1, 4, 4)))
        for (lam, shape), kernels in itertools.product(cases, KERNEL_CHOICES):
            with self.subTest(lam=lam, kernels=kernels), use_kernels(kernels):
                x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
                torch.library.opcheck(torch.ops.tensormask_proj.swap_align2nat, (x, lam, -6.0))
                y = swap_align2nat(x, lam)
                torch.library.opcheck(
                    torch.ops.tensormask_proj.swap_align2nat_backward,
                    (torch.randn_like(y), lam, list(shape)),
                )

    def test_torch_compile_fullgraph(self):
        def f(x):
            return torch.sigmoid(swap_align2nat(x * 2, 2))

        x = torch.randn(1, 9, 8, 10, requires_grad=True)
        compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
        out = compiled(x)
        _close(self, out, f(x), atol=1e-6)
        (g1,) = torch.autograd.grad(out.sum(), x)
        (g2,) = torch.autograd.grad(f(x).sum(), x)
        _close(self, g1, g2, atol=1e-6)

    def test_fake_tensor_shapes(self):
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            out = swap_align2nat(torch.empty(3, 121, 200, 272), 8)
            self.assertEqual(out.shape, (3, 88 * 88, 25, 34))
            with self.assertRaisesRegex(ValueError, "perfect square"):
                swap_align2nat(torch.empty(1, 10, 4, 4), 2)


@unittest.skipIf(not (HAS_CUDA and _ext.has_ops()), "needs a CUDA GPU")
class SwapAlign2NatCUDATest(unittest.TestCase):
    CASES = (
        (1, 1, 3, 4),
        (11, 1, 9, 12),
        (15, 2, 9, 13),
        (2, 3, 10, 9),
        (3, 8, 24, 31),
        (2, 32, 33, 65),
        (1, 1, 300, 7),
    )

    def test_cuda_matches_cpu(self):
        # CUDA with each kernel choice against the CPU with the same choice (on CUDA "default"
        # runs the shared element functions, as "shared" does).
        gen = torch.Generator().manual_seed(2)
        for (v, lam, h, w), dtype in itertools.product(self.CASES, (torch.float32, torch.float64)):
            x = torch.randn(2, v * v, h, w, generator=gen, dtype=dtype)
            g = torch.randn(
                2, (lam * v) ** 2, -(-h // lam), -(-w // lam), generator=gen, dtype=dtype
            )
            atol = 1e-5 if dtype == torch.float32 else 1e-12
            for kernels in KERNEL_CHOICES:
                with self.subTest(v=v, lam=lam, dtype=dtype, kernels=kernels):
                    with use_kernels(kernels):
                        xc = x.cuda().requires_grad_(True)
                        xh = x.clone().requires_grad_(True)
                        yc, yh = swap_align2nat(xc, lam), swap_align2nat(xh, lam)
                        _close(self, yc.cpu(), yh, atol=atol)
                        yc.backward(g.cuda())
                        yh.backward(g)
                        _close(self, xc.grad.cpu(), xh.grad, atol=atol * 10)

    def test_cuda_shared_kernels_equal_the_cpu_run_of_them(self):
        # The same element functions on both devices: float64 results agree to the last bits
        # (the compilers may contract multiply-adds differently).
        gen = torch.Generator().manual_seed(3)
        for v, lam, h, w in self.CASES:
            x = torch.randn(2, v * v, h, w, generator=gen, dtype=torch.float64)
            for kernels in ("shared", "tiled"):
                with self.subTest(v=v, lam=lam, kernels=kernels), use_kernels(kernels):
                    _close(self, swap_align2nat(x.cuda(), lam).cpu(), swap_align2nat(x, lam), 1e-14)
            with use_kernels("shared"):
                y = swap_align2nat(x, lam)
                g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
                cpu = torch.ops.tensormask_proj.swap_align2nat_backward(g, lam, list(x.shape))
                cuda = torch.ops.tensormask_proj.swap_align2nat_backward(
                    g.cuda(), lam, list(x.shape)
                )
                _close(self, cuda.cpu(), cpu, atol=1e-13, msg=f"backward V={v} lambda={lam}")

    def test_cuda_tiled_forward_is_bit_identical(self):
        x = torch.randn(2, 121, 50, 68, device="cuda")
        for lam in (1, 2, 4, 8, 16, 32):
            with self.subTest(lam=lam):
                with use_kernels("shared"):
                    shared = swap_align2nat(x, lam)
                with use_kernels("tiled"):
                    tiled = swap_align2nat(x, lam)
                self.assertTrue(torch.equal(tiled, shared))

    def test_cuda_half_and_gradcheck(self):
        x = torch.randn(2, 9, 7, 8, device="cuda")
        for kernels in KERNEL_CHOICES:
            with self.subTest(kernels=kernels), use_kernels(kernels):
                expected = swap_align2nat(x, 2)
                _close(self, swap_align2nat(x.half(), 2).float(), expected, atol=2e-2, rtol=1e-2)
                _close(
                    self, swap_align2nat(x.bfloat16(), 2).float(), expected, atol=1e-1, rtol=1e-2
                )
                xd = torch.randn(1, 4, 5, 6, device="cuda", dtype=torch.float64, requires_grad=True)
                self.assertTrue(torch.autograd.gradcheck(lambda t: swap_align2nat(t, 2), (xd,)))
                torch.library.opcheck(torch.ops.tensormask_proj.swap_align2nat, (xd, 2, -6.0))

    def test_cuda_raw_op_errors(self):
        raw_op_errors(self, "cuda", RAW_OP_CASES, KERNEL_CHOICES)

    def test_cuda_backward_deterministic_and_empty(self):
        x = torch.randn(1, 9, 20, 21, device="cuda", requires_grad=True)
        y = swap_align2nat(x, 4)
        g = torch.randn_like(y)
        (g1,) = torch.autograd.grad(y, x, g, retain_graph=True)
        (g2,) = torch.autograd.grad(y, x, g)
        self.assertTrue(torch.equal(g1, g2))
        e = torch.randn(0, 4, 5, 6, device="cuda", requires_grad=True)
        swap_align2nat(e, 2).sum().backward()
        self.assertEqual(e.grad.shape, e.shape)


class SwapAlign2NatWithoutExtensionTest(unittest.TestCase):
    def test_missing_extension_message(self):
        saved = _ext._import_error
        _ext._import_error = ImportError("simulated")
        try:
            with self.assertRaisesRegex(RuntimeError, "make setup"):
                swap_align2nat(torch.randn(1, 4, 3, 3), 1)
        finally:
            _ext._import_error = saved


if __name__ == "__main__":
    unittest.main()
