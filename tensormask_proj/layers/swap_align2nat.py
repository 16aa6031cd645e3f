"""
``swap_align2nat``: convert a TensorMask window tensor from the aligned to the natural
representation while swapping the unit lengths of its window and spatial axes (TensorMask,
Chen et al. 2019, §3.2 and §4.2 "tensor bipyramid").

Geometry. A 4-D mask tensor (V, U, H, W) holds, at each sliding-window position (y, x), a V x U
window of mask logits. Its layout in memory is (N, V*U, H, W) with channel ``v * U + u``
(v along y, u along x). Windows are square here (V == U), so the channel count must be a perfect
square. In the *natural* representation, cell (v, u) at (y, x) describes the pixel at offset
(v - V/2 + 0.5, u - U/2 + 0.5) cells from the window centre at (y, x). In the *aligned*
representation, cell (v, u) at (y, x) describes the pixel (y, x) itself, as seen by the window
whose centre is at offset (V/2 - 0.5 - v, U/2 - 0.5 - u).

The op takes an aligned tensor whose window unit is ``lambda_val`` times its spatial unit (the
bipyramid's level-l masks predicted on the finest grid, lambda = 2^l) and returns the natural
tensor whose window unit is the fine unit and whose spatial unit is ``lambda_val`` times coarser:

    input  x: Tensor[N, V*V, H, W]
    output  : Tensor[N, (lambda*V)^2, ceil(H / lambda), ceil(W / lambda)]

Output element (n, v, u, y, x) samples x multilinearly (bilinear in the spatial axes and bilinear
in the window axes) at

    sy = y * lambda + v - Vout/2 + 0.5        sx = x * lambda + u - Vout/2 + 0.5
    sv = (v + 0.5) / lambda - 0.5             su = (u + 0.5) / lambda - 0.5

with Vout = lambda * V (``align_corners=False`` resampling of the window by lambda). Every corner
that falls outside the input, in any of the four axes (the window axes included: they are not
clamped), reads ``pad_val``. The default -6 is a logit whose sigmoid is ~0.0025, i.e. "background"
for the parts of a window that the aligned tensor does not cover. Rows and columns past H or W
when H or W is not a multiple of lambda read pad as well. The backward is the exact adjoint (pad
receives no gradient). These are exactly the semantics of detectron2's official TensorMask CUDA
op, so official checkpoints reproduce their outputs; this implementation adds a CPU kernel,
float16/bfloat16, a deterministic backward, and registration with the PyTorch dispatcher
(``torch.ops.tensormask_proj.swap_align2nat``) with a fake kernel, so ``torch.compile``,
``torch.library.opcheck`` and autograd work.

Kernels (``csrc/``, see ``docs/swap_align2nat.md``): every CUDA kernel is an element function
shared with the CPU (``csrc/swap_align2nat_elements.h``). The CPU runs faster CPU-only kernels by
default; :func:`use_kernels` selects the shared ones, which is how the CPU tests check the CUDA
kernels' arithmetic and indexing.
"""

import contextlib
import math

import torch
from torch import nn

from .. import _ext

__all__ = ["swap_align2nat", "SwapAlign2Nat", "use_kernels", "KERNEL_CHOICES"]

_LIB = "tensormask_proj"

# Kernel choices of use_kernels (KernelChoice in csrc/swap_align2nat.h).
KERNEL_CHOICES = ("default", "shared", "tiled")


@contextlib.contextmanager
def use_kernels(name: str):
    """
    Run the kernels ``name`` of ``swap_align2nat`` and ``swap_align2nat_at`` inside the ``with``
    block, for the whole process (tests and benchmarks; not thread-safe against other callers):

    * ``"default"``: on the CPU, the CPU-only kernels (the dense op's row kernels and
      ``swap_align2nat_at``'s scatter backward), faster there; on CUDA, the shared element
      functions;
    * ``"shared"``: the shared element functions on both devices, i.e. on the CPU exactly the
      CUDA kernels' arithmetic and indexing;
    * ``"tiled"``: as ``"shared"``, with the tiled dense forward.

    All choices compute the same values (the tiled forward is bit-identical to the shared one;
    the others agree to rounding) and deterministic gradients.
    """
    if name not in KERNEL_CHOICES:
        raise ValueError(f"use_kernels: unknown kernels {name!r}, expected one of {KERNEL_CHOICES}")
    _ext.assert_has_ops()
    previous = torch.ops.tensormask_proj._set_kernels(name)
    try:
        yield
    finally:
        torch.ops.tensormask_proj._set_kernels(previous)


def check_args(x: torch.Tensor, lambda_val, op: str = "swap_align2nat") -> int:
    """Validate the arguments like the C++ kernels do; returns the window size V."""
    if isinstance(lambda_val, bool) or not isinstance(lambda_val, int):
        raise TypeError(
            f"{op}: lambda_val must be an int >= 1, got {lambda_val!r} "
            f"({type(lambda_val).__name__})"
        )
    if lambda_val < 1:
        raise ValueError(f"{op}: lambda_val must be >= 1, got {lambda_val}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{op}: expected a 4-D input (N, V*V, H, W), got a tensor of shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected a floating-point input, got {x.dtype}")
    channels = x.shape[1]
    v = math.isqrt(channels)
    if v * v != channels:
        raise ValueError(
            f"{op}: the channel count must be a perfect square V*V (a VxV window), got "
            f"{channels} channels (input shape {tuple(x.shape)})"
        )
    return v


def _output_shape(x_shape, lambda_val: int):
    n, c, h, w = x_shape
    v_out = math.isqrt(c) * lambda_val
    return (n, v_out * v_out, -(-h // lambda_val), -(-w // lambda_val))


def swap_align2nat(x: torch.Tensor, lambda_val: int, pad_val: float = -6.0) -> torch.Tensor:
    """
    Aligned-to-natural conversion with unit swap (see the module docstring for the geometry).

    Args:
        x (Tensor[N, V*V, H, W]): aligned window tensor, floating point, on CPU or CUDA.
        lambda_val (int): ratio >= 1 of the input's window unit to its spatial unit.
        pad_val (float): value read outside the input (a logit; -6 means "background").

    Returns:
        Tensor[N, (lambda_val*V)^2, ceil(H/lambda_val), ceil(W/lambda_val)]: natural tensor, same
        dtype and device as ``x``. Differentiable with respect to ``x``.
    """
    check_args(x, lambda_val)
    _ext.assert_has_ops()
    return torch.ops.tensormask_proj.swap_align2nat(x, lambda_val, float(pad_val))


class SwapAlign2Nat(nn.Module):
    """Module form of :func:`swap_align2nat` (no parameters)."""

    def __init__(self, lambda_val: int, pad_val: float = -6.0):
        super().__init__()
        if isinstance(lambda_val, bool) or not isinstance(lambda_val, int) or lambda_val < 1:
            raise ValueError(f"SwapAlign2Nat: lambda_val must be an int >= 1, got {lambda_val!r}")
        self.lambda_val = lambda_val
        self.pad_val = float(pad_val)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swap_align2nat(x, self.lambda_val, self.pad_val)

    def extra_repr(self) -> str:
        return f"lambda_val={self.lambda_val}, pad_val={self.pad_val}"


# ---- dispatcher registrations: fake (meta) kernels and autograd --------------------------------
if _ext.has_ops():

    @torch.library.register_fake(f"{_LIB}::swap_align2nat")
    def _swap_align2nat_fake(x, lambda_val, pad_val):
        check_args(x, lambda_val)
        return x.new_empty(_output_shape(x.shape, lambda_val))

    @torch.library.register_fake(f"{_LIB}::swap_align2nat_backward")
    def _swap_align2nat_backward_fake(grad_output, lambda_val, input_size):
        expected = _output_shape(input_size, lambda_val)
        torch._check(
            tuple(grad_output.shape) == tuple(expected),
            lambda: f"swap_align2nat_backward: grad_output has shape {tuple(grad_output.shape)}"
            f", expected {tuple(expected)}",
        )
        return grad_output.new_empty(input_size)

    def _setup_context(ctx, inputs, output):
        x, lambda_val, _pad_val = inputs
        ctx.lambda_val = lambda_val
        ctx.input_size = x.shape

    def _backward(ctx, grad_output):
        grad_x = torch.ops.tensormask_proj.swap_align2nat_backward(
            grad_output, ctx.lambda_val, list(ctx.input_size)
        )
        return grad_x, None, None

    torch.library.register_autograd(
        f"{_LIB}::swap_align2nat", _backward, setup_context=_setup_context
    )

    def _setup_context_backward(ctx, inputs, output):
        _grad_output, lambda_val, _input_size = inputs
        ctx.lambda_val = lambda_val

    def _backward_backward(ctx, grad_grad_x):
        # The backward is linear in grad_output with the forward's linear part as its adjoint,
        # so its own derivative is the forward without the pad term (pad_val = 0).
        grad = torch.ops.tensormask_proj.swap_align2nat(grad_grad_x, ctx.lambda_val, 0.0)
        return grad, None, None

    torch.library.register_autograd(
        f"{_LIB}::swap_align2nat_backward",
        _backward_backward,
        setup_context=_setup_context_backward,
    )
