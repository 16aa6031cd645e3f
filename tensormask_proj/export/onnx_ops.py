"""
ONNX translations of ``tensormask_proj::swap_align2nat`` and ``tensormask_proj::swap_align2nat_at``
as decompositions into standard ONNX operators, registered with the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``, ``register_custom_op_symbolic``).

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
                                              if Vo is even: the fixed 2x2 box average)
    window cells  i = a + s, s in {-1, 0, 1}, with v = a*λ + b and weights w_s[b] depending on b
                  only (the window axis is resampled by λ with align_corners=False).

After padding the rows with R zeros in front, t + R = (y + a)*λ + b, so reshaping the rows into
blocks of λ turns (row, window) into (block q = y + a, offset b, window i = a + s). The pairs
(i, q) = (a + s, y + a) lie on a diagonal of the (window, block) plane, which a flat view with
row length (blocks + 1) reads as a plain rectangle: Reshape and Slice, no Gather. Each pass costs
a few elementwise operations per output element, so the exported op keeps the compiled op's
O(output) cost.

``swap_align2nat_at`` (windows at requested centres (r, c), as the dense op's windows at
(r/λ, c/λ)) reads, for each request, the (Vo+1) x (Vo+1) crop of the map starting at
(r - R, c - R) (a Gather; rows and columns outside the map read zero after subtracting pad).
Along each axis, output cell v then reads crop cells v (and v + 1 if Vo is even) of window
cells a + s with the weights above: a constant (Vo, V*(Vo+1)) matrix A, and the windows are
pad + A · crop · Aᵀ (two MatMuls per request).
"""

import math

import torch
from torch.onnx import register_custom_op_symbolic
from torch.onnx import symbolic_helper as sym_help

__all__ = [
    "ONNX_OPSET",
    "register_onnx_ops",
    "swap_align2nat_at_onnx_matrix",
    "swap_align2nat_onnx_weights",
]

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


def swap_align2nat_at_onnx_matrix(v_in: int, lambda_val: int):
    """
    The matrix A of the ``swap_align2nat_at`` decomposition (module docstring).

    Returns:
        Tensor[Vo, V * (Vo + 1)] float64: entry (v, i * (Vo + 1) + t) is the weight of window
        cell i, crop cell t (rows or columns from the centre - Vo // 2) in output cell v.
    """
    v_out = v_in * lambda_val
    taps = v_out + 1
    window = swap_align2nat_onnx_weights(v_in, lambda_val)
    # One crop cell if Vo is odd; the mean of two if it is even (the half-cell offset).
    spatial = ((0, 1.0),) if v_out % 2 else ((0, 0.5), (1, 0.5))
    matrix = torch.zeros(v_out, v_in, taps, dtype=torch.float64)
    for v in range(v_out):
        a, b = divmod(v, lambda_val)
        for s in (-1, 0, 1):
            if 0 <= a + s < v_in:  # window cells outside read pad: zero weight after - pad
                for dt, w in spatial:
                    matrix[v, a + s, v + dt] += window[s + 1, b] * w
    return matrix.reshape(v_out, v_in * taps)


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
        "Concat",
        b_dim,
        g.op("Mul", blocks, _const(g, [v_in + 2])),
        _const(g, [lam]),
        c_dim,
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
    return g.op("Reshape", out, g.op("Concat", b_dim, _const(g, [v_out]), h_out, c_dim, axis_i=0))


def _window_side(x, op: str) -> int:
    """V from the input's static channel count V*V."""
    channels = sym_help._get_tensor_dim_size(x, 1)
    if channels is None:
        raise RuntimeError(
            f"{op} ONNX export: the channel count (V*V) of the input must be static, but the "
            "traced graph has a dynamic channel dimension"
        )
    v_in = math.isqrt(channels)
    if v_in * v_in != channels:
        raise RuntimeError(f"{op} ONNX export: {channels} channels is not a square V*V")
    return v_in


@sym_help.parse_args("v", "i", "f")
def _swap_align2nat_symbolic(g, x, lambda_val, pad_val):
    v_in = _window_side(x, "swap_align2nat")
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
        "Reshape",
        z,
        g.op("Concat", n_dim, _const(g, [v_out]), h_out, _const(g, [v_out]), w_out, axis_i=0),
    )
    z = g.op("Transpose", z, perm_i=[0, 1, 3, 2, 4])  # (N, Vo, Uo, Ho, Wo)
    z = g.op(
        "Reshape",
        z,
        g.op("Concat", n_dim, _const(g, [v_out * v_out]), h_out, w_out, axis_i=0),
    )
    return g.op("Add", z, pad)


@sym_help.parse_args("v", "v", "v", "v", "i", "f")
def _swap_align2nat_at_symbolic(g, x, image_ids, rows, cols, lambda_val, pad_val):
    v_in = _window_side(x, "swap_align2nat_at")
    v_out = v_in * lambda_val
    taps = v_out + 1
    matrix = swap_align2nat_at_onnx_matrix(v_in, lambda_val).float()
    pad = g.op("Constant", value_t=torch.tensor(pad_val, dtype=torch.float32))
    shape = g.op("Shape", x)
    height, width = _scalar_dim(g, shape, 2), _scalar_dim(g, shape, 3)
    offsets = _const(g, [t - v_out // 2 for t in range(taps)])

    def crop_cells(centres, size):  # (n,) -> cells (n, T) clamped into the map, and validity
        cells = g.op("Add", g.op("Unsqueeze", centres, _const(g, [1])), offsets)
        valid = g.op(
            "And",
            g.op("Not", g.op("Less", cells, _const(g, [0]))),
            g.op("Less", cells, size),
        )
        return g.op("Where", valid, cells, _const(g, [0])), valid

    r, r_valid = crop_cells(rows, height)
    c, c_valid = crop_cells(cols, width)
    # Flat index ((image * V*V + channel) * H + row) * W + col, shape (n, V*V, T, T).
    image = g.op("Reshape", image_ids, _const(g, [-1, 1, 1, 1]))
    channel = _const(g, list(range(v_in * v_in)))
    channel = g.op("Reshape", channel, _const(g, [1, -1, 1, 1]))
    plane = g.op("Add", g.op("Mul", image, _const(g, [v_in * v_in])), channel)
    row = g.op("Add", g.op("Mul", plane, height), g.op("Unsqueeze", r, _const(g, [1, 3])))
    index = g.op("Add", g.op("Mul", row, width), g.op("Unsqueeze", c, _const(g, [1, 2])))
    crop = g.op("Gather", g.op("Reshape", x, _const(g, [-1])), index, axis_i=0)
    valid = g.op(
        "And",
        g.op("Unsqueeze", r_valid, _const(g, [1, 3])),
        g.op("Unsqueeze", c_valid, _const(g, [1, 2])),
    )
    crop = g.op("Mul", g.op("Sub", crop, pad), g.op("Cast", valid, to_i=1))  # 1: FLOAT
    # (n, i, j, t, s) -> (n, i, t, j, s) -> (n, V*T, V*T); windows = A @ crop @ A^T + pad.
    crop = g.op("Reshape", crop, _const(g, [-1, v_in, v_in, taps, taps]))
    crop = g.op("Transpose", crop, perm_i=[0, 1, 3, 2, 4])
    crop = g.op("Reshape", crop, _const(g, [-1, v_in * taps, v_in * taps]))
    left = g.op("Constant", value_t=matrix)
    right = g.op("Constant", value_t=matrix.t().contiguous())
    windows = g.op("MatMul", g.op("MatMul", left, crop), right)
    return g.op("Add", windows, pad)


def register_onnx_ops(opset: int = ONNX_OPSET) -> None:
    """Register the ONNX translations of the project's operators (idempotent)."""
    register_custom_op_symbolic("tensormask_proj::swap_align2nat", _swap_align2nat_symbolic, opset)
    register_custom_op_symbolic(
        "tensormask_proj::swap_align2nat_at", _swap_align2nat_at_symbolic, opset
    )
