"""
``swap_align2nat_at``: the natural windows of :func:`swap_align2nat` at requested positions only.

The dense op returns a natural window at every position of the coarse grid; TensorMask's
training uses only the positive windows and its inference about 100 detections. The natural
window at output position (y, x) is centred at row y * lambda, column x * lambda of the aligned
map and reads it only in the rows [y*lambda - Vout//2, y*lambda + Vout//2] (columns likewise), so
it can be computed alone. This op takes the requests of a whole pyramid level at once:

    input  x: Tensor[N, V*V, H, W]     aligned map (window unit = lambda x spatial unit)
           image_ids, rows, cols: Tensor[n] (int64), window k centred at (rows[k], cols[k]) of
           image image_ids[k], on x's grid
    output  : Tensor[n, Vout, Vout], Vout = lambda * V (rows along y, columns along x)

With ``rows = y * lambda`` and ``cols = x * lambda`` window k equals
``swap_align2nat(x, lambda_val, pad_val)[image_ids[k], :, y, x].view(Vout, Vout)``. Any centre is
allowed, which lets a caller pass a crop of a larger map (with its centres shifted by the crop's
origin) as long as the crop holds every row and column of the map that the windows read: the op
reads ``pad_val`` outside x, which must then also be outside the full map. The geometry, the pad
semantics and the dtypes are those of :func:`swap_align2nat` (module docstring there). Requests
may repeat a centre; their gradients add up. The CPU and CUDA kernels run the same element
functions (``csrc/swap_align2nat_elements.h``): the backward gathers, per element of the map,
over the requests sorted into buckets by centre, so its cost grows with the map, not with
(map x requests), and it is deterministic on both devices (no atomics). By default the CPU
runs a deterministic scatter instead, cheaper there (:func:`use_kernels`).
"""

import torch

from .. import _ext
from .swap_align2nat import check_args

__all__ = ["swap_align2nat_at"]

_LIB = "tensormask_proj"
_OP = "swap_align2nat_at"


def check_requests(x: torch.Tensor, image_ids, rows, cols) -> int:
    """Validate the request tensors like the C++ kernels do; returns their length n."""
    for name, t in (("image_ids", image_ids), ("rows", rows), ("cols", cols)):
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.int64:
            desc = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else t
            raise TypeError(f"{_OP}: {name} must be a 1-D int64 tensor, got {desc}")
        if t.device != x.device:
            raise ValueError(f"{_OP}: {name} is on {t.device} but the map is on {x.device}")
    if not image_ids.shape[0] == rows.shape[0] == cols.shape[0]:
        raise ValueError(
            f"{_OP}: image_ids, rows and cols must have one length, got {image_ids.shape[0]}, "
            f"{rows.shape[0]} and {cols.shape[0]}"
        )
    return image_ids.shape[0]


def swap_align2nat_at(
    x: torch.Tensor,
    image_ids: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    lambda_val: int,
    pad_val: float = -6.0,
) -> torch.Tensor:
    """
    Natural windows of :func:`swap_align2nat` at requested centres (see the module docstring).

    Args:
        x (Tensor[N, V*V, H, W]): aligned map, floating point, on CPU or CUDA.
        image_ids, rows, cols (Tensor[n], int64): image, row and column of each window centre on
            x's grid (row y * lambda_val for the dense op's output row y), on x's device.
        lambda_val (int): ratio >= 1 of the input's window unit to its spatial unit.
        pad_val (float): value read outside x (a logit; -6 means "background").

    Returns:
        Tensor[n, lambda_val*V, lambda_val*V]: the natural windows, differentiable with respect to
        ``x``.
    """
    check_args(x, lambda_val, _OP)
    check_requests(x, image_ids, rows, cols)
    _ext.assert_has_ops()
    return torch.ops.tensormask_proj.swap_align2nat_at(
        x, image_ids, rows, cols, lambda_val, float(pad_val)
    )


# ---- dispatcher registrations: fake (meta) kernels and autograd --------------------------------
if _ext.has_ops():

    @torch.library.register_fake(f"{_LIB}::swap_align2nat_at")
    def _swap_align2nat_at_fake(x, image_ids, rows, cols, lambda_val, pad_val):
        v_out = check_args(x, lambda_val, _OP) * lambda_val
        n = check_requests(x, image_ids, rows, cols)
        return x.new_empty((n, v_out, v_out))

    @torch.library.register_fake(f"{_LIB}::swap_align2nat_at_backward")
    def _swap_align2nat_at_backward_fake(grad_output, image_ids, rows, cols, lambda_val, size):
        v_out = round(size[1] ** 0.5) * lambda_val
        expected = (image_ids.shape[0], v_out, v_out)
        torch._check(
            tuple(grad_output.shape) == expected,
            lambda: f"{_OP}_backward: grad_output has shape {tuple(grad_output.shape)}, expected "
            f"{expected}",
        )
        return grad_output.new_empty(size)

    def _setup_context(ctx, inputs, output):
        x, image_ids, rows, cols, lambda_val, _pad_val = inputs
        ctx.save_for_backward(image_ids, rows, cols)
        ctx.lambda_val = lambda_val
        ctx.input_size = x.shape

    def _backward(ctx, grad_output):
        image_ids, rows, cols = ctx.saved_tensors
        grad_x = torch.ops.tensormask_proj.swap_align2nat_at_backward(
            grad_output, image_ids, rows, cols, ctx.lambda_val, list(ctx.input_size)
        )
        return grad_x, None, None, None, None, None

    torch.library.register_autograd(
        f"{_LIB}::swap_align2nat_at", _backward, setup_context=_setup_context
    )

    def _setup_context_backward(ctx, inputs, output):
        _grad_output, image_ids, rows, cols, lambda_val, _size = inputs
        ctx.save_for_backward(image_ids, rows, cols)
        ctx.lambda_val = lambda_val

    def _backward_backward(ctx, grad_grad_x):
        # The backward is linear in grad_output with the forward's linear part as its adjoint,
        # so its own derivative is the forward without the pad term (pad_val = 0).
        image_ids, rows, cols = ctx.saved_tensors
        grad = torch.ops.tensormask_proj.swap_align2nat_at(
            grad_grad_x, image_ids, rows, cols, ctx.lambda_val, 0.0
        )
        return grad, None, None, None, None, None

    torch.library.register_autograd(
        f"{_LIB}::swap_align2nat_at_backward",
        _backward_backward,
        setup_context=_setup_context_backward,
    )
