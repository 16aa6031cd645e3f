"""
ONNX translation of ``tensormask_proj::swap_align2nat`` as a decomposition into standard ONNX
operators, registered with the TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``, ``register_custom_op_symbolic``).

Why a decomposition rather than a custom-domain op: the exported file then runs on any ONNX
runtime (onnxruntime, TensorRT's parser, ...) without a compiled runtime extension that every
user would have to build for their platform; and λ being an integer makes the op cheap to
express with standard operators.

Geometry (see ``tensormask_proj/layers/swap_align2nat.py``). The op is a multilinear
interpolation whose weights along each axis sum to one, and every out-of-range corner reads
``pad``. Writing ``pad`` as ``pad + valid * (x - pad)`` gives

    swap_align2nat(x) = pad + I(x - pad),

where I is the same interpolation with *zeros* outside: a linear map, separable into a (v, y)
pass and a (u, x) pass. Along one axis (rows; columns alike) with V input cells, Vo = λV output
cells and R = Vo // 2, output cell (v, y) reads

    spatial row   t = y*λ + v - R            (one row if Vo is odd; the mean of rows t and t+1
                                              if Vo is even: the fixed 2x2 average of the README)
    window cells  i = a + s, s in {-1, 0, 1}, with v = a*λ + b and weights w_s[b] depending on b
                  only (the window axis is resampled by λ with align_corners=False).

After padding the rows with R zeros in front, t + R = (y + a)*λ + b, so reshaping the rows into
blocks of λ turns (row, window) into (block q = y + a, offset b, window i = a + s). The pairs
(i, q) = (a + s, y + a) lie on a diagonal of the (window, block) plane, which a flat view with
row length (blocks + 1) reads as a plain rectangle: Reshape and Slice, no Gather. Each pass costs
a few elementwise operations per output element, so the exported op keeps the compiled op's
O(output) cost.
"""
import math

import torch
from torch.onnx import register_custom_op_symbolic
from torch.onnx import symbolic_helper as sym_help

__all__ = ["ONNX_OPSET", "register_onnx_ops", "swap_align2nat_onnx_weights"]

# 16: GridSample (mask pasting) and RoiAlign with half_pixel coordinates (BlendMask's pooler).
ONNX_OPSET = 17


def swap_align2nat_onnx_weights(v_in: int, lambda_val: int):
    """
    The window-axis weights w_s[b] of the decomposition (see the module docstring).

    Returns:
        Tensor[3, λ] float64: row s + 1 holds the weight of input window cell a + s for output
        cell v = a*λ + b (the same for every a).
    """
    weights = torch.zeros(3, lambda_val, dtype=torch.float64)
    for b in range(lambda_val):
        coord = (b + 0.5) / lambda_val - 0.5  # window coordinate of cell b, relative to a
        lo = math.floor(coord)
        frac = coord - lo
        weights[lo + 1, b] += 1 - frac
        weights[lo + 2, b] += frac  # lo is -1 or 0, so lo + 1 <= 1
    return weights


def _const(g, values, dtype=torch.int64):
    return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))


def _scalar_dim(g, shape, dim: int):
    """shape[dim] as a 1-D int64 tensor of one element."""
    return g.op("Gather", shape, _const(g, [dim]), axis_i=0)


def _axis_pass(g, z, v_in: int, lambda_val: int, weights):
    """
    One pass of the decomposition on z of shape (B, V, H, C) (B, C: any fixed extents carried
    along), returning (B, Vo, Ho, C) with Vo = λV and Ho = ceil(H / λ).
    """
    lam, v_out = lambda_val, v_in * lambda_val
    reach = v_out // 2
    even = v_out % 2 == 0
    shape = g.op("Shape", z)
    b_dim, h_dim, c_dim = (_scalar_dim(g, shape, d) for d in (0, 2, 3))
    h_out = g.op("Div", g.op("Add", h_dim, _const(g, [lam - 1])), _const(g, [lam]))
    blocks = g.op("Add", h_out, _const(g, [v_in]))  # q = y + a < Ho + V
    rows = g.op("Mul", blocks, _const(g, [lam]))
    # Zero rows: R in front, and at the back up to blocks*λ rows (+1 read by the 2-row mean).
    back = g.op(
        "Sub", g.op("Add", rows, _const(g, [int(even)])), g.op("Add", h_dim, _const(g, [reach]))
    )
    pads = g.op("Concat", _const(g, [0, 0, reach, 0, 0, 0]), back, _const(g, [0]), axis_i=0)
    z = g.op("Pad", z, pads)
    if even:
        first = g.op("Slice", z, _const(g, [0]), rows, _const(g, [2]))
        second = g.op("Slice", z, _const(g, [1]), g.op("Add", rows, _const(g, [1])), _const(g, [2]))
        z = g.op("Mul", g.op("Add", first, second), g.op("Constant", value_t=torch.tensor(0.5)))
    # (B, V, blocks*λ, C) -> (B, V, blocks, λ, C), then one zero window cell on both sides so
    # that i = a + s is always in range (i = -1 and i = V read zero, i.e. pad).
    shape5 = g.op("Concat", b_dim, _const(g, [v_in]), blocks, _const(g, [lam]), c_dim, axis_i=0)
    z = g.op("Reshape", z, shape5)
    z = g.op("Pad", z, _const(g, [0, 1, 0, 0, 0, 0, 1, 0, 0, 0]))
    # Flat (window, block) axis of (V + 2) * blocks entries, plus V zeros so that every slice
    # below stays inside it.
    flat_shape = g.op(
        "Concat", b_dim, g.op("Mul", blocks, _const(g, [v_in + 2])), _const(g, [lam]), c_dim,
        axis_i=0,
    )
    z = g.op("Reshape", z, flat_shape)
    z = g.op("Pad", z, _const(g, [0, 0, 0, 0, 0, v_in, 0, 0]))
    stride = g.op("Add", blocks, _const(g, [1]))
    diag_shape = g.op("Concat", b_dim, _const(g, [v_in]), stride, _const(g, [lam]), c_dim, axis_i=0)
    out = None
    for s in (-1, 0, 1):
        w = weights[s + 1]
        if not bool(w.any()):
            continue
        # Entry (a + s + 1, y + a) of the padded (window, block) plane is flat index
        # (s + 1) * blocks + a * (blocks + 1) + y.
        start = g.op("Mul", blocks, _const(g, [s + 1]))
        end = g.op("Add", start, g.op("Mul", stride, _const(g, [v_in])))
        diag = g.op("Slice", z, start, end, _const(g, [1]))
        diag = g.op("Reshape", diag, diag_shape)
        diag = g.op("Slice", diag, _const(g, [0]), h_out, _const(g, [2]))  # (B, V, Ho, λ, C)
        term = g.op("Mul", diag, g.op("Constant", value_t=w.float().view(1, 1, 1, lam, 1)))
        out = term if out is None else g.op("Add", out, term)
    # (B, a, y, b, C) -> (B, a, b, y, C) -> (B, Vo, Ho, C) with v = a*λ + b.
    out = g.op("Transpose", out, perm_i=[0, 1, 3, 2, 4])
    return g.op(
        "Reshape", out, g.op("Concat", b_dim, _const(g, [v_out]), h_out, c_dim, axis_i=0)
    )


@sym_help.parse_args("v", "i", "f")
def _swap_align2nat_symbolic(g, x, lambda_val, pad_val):
    channels = sym_help._get_tensor_dim_size(x, 1)
    if channels is None:
        raise RuntimeError(
            "swap_align2nat ONNX export: the channel count (V*V) of the input must be static, "
            "but the traced graph has a dynamic channel dimension"
        )
    v_in = math.isqrt(channels)
    if v_in * v_in != channels:
        raise RuntimeError(f"swap_align2nat ONNX export: {channels} channels is not a square V*V")
    weights = swap_align2nat_onnx_weights(v_in, lambda_val)
    v_out = v_in * lambda_val
    pad = g.op("Constant", value_t=torch.tensor(pad_val, dtype=torch.float32))
    shape = g.op("Shape", x)
    n_dim, h_dim, w_dim = (_scalar_dim(g, shape, d) for d in (0, 2, 3))
    z = g.op("Sub", x, pad)
    # Row pass on (N, i, H, j*W): (v, y) from (i, H), the column axes carried along.
    z = g.op("Reshape", z, g.op("Concat", n_dim, _const(g, [v_in, v_in]), h_dim, w_dim, axis_i=0))
    z = g.op("Transpose", z, perm_i=[0, 1, 3, 2, 4])  # (N, i, H, j, W)
    row_shape = g.op(
        "Concat", n_dim, _const(g, [v_in]), h_dim, g.op("Mul", w_dim, _const(g, [v_in])), axis_i=0
    )
    z = g.op("Reshape", z, row_shape)
    z = _axis_pass(g, z, v_in, lambda_val, weights)  # (N, Vo, Ho, j*W)
    # Column pass on (N*Vo*Ho, j, W, 1).
    z = g.op("Reshape", z, g.op("Concat", _const(g, [-1, v_in]), w_dim, _const(g, [1]), axis_i=0))
    z = _axis_pass(g, z, v_in, lambda_val, weights)  # (N*Vo*Ho, Uo, Wo, 1)
    h_out = g.op("Div", g.op("Add", h_dim, _const(g, [lambda_val - 1])), _const(g, [lambda_val]))
    w_out = g.op("Div", g.op("Add", w_dim, _const(g, [lambda_val - 1])), _const(g, [lambda_val]))
    z = g.op(
        "Reshape", z,
        g.op("Concat", n_dim, _const(g, [v_out]), h_out, _const(g, [v_out]), w_out, axis_i=0),
    )
    z = g.op("Transpose", z, perm_i=[0, 1, 3, 2, 4])  # (N, Vo, Uo, Ho, Wo)
    z = g.op(
        "Reshape", z,
        g.op("Concat", n_dim, _const(g, [v_out * v_out]), h_out, w_out, axis_i=0),
    )
    return g.op("Add", z, pad)


def register_onnx_ops(opset: int = ONNX_OPSET) -> None:
    """Register the ONNX translations of the project's operators (idempotent)."""
    register_custom_op_symbolic(
        "tensormask_proj::swap_align2nat", _swap_align2nat_symbolic, opset
    )
