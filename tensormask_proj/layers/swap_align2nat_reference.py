"""
Slow pure-PyTorch implementations of ``swap_align2nat`` and ``swap_align2nat_at``: the oracles of
the tests, written directly from the sampling formula (see ``swap_align2nat.py``) with
coordinates in float64; autograd provides their backward.

Both are built on one description of the geometry, :func:`_axis_samples`: for windows centred at
some rows (or columns) of the aligned grid, the corners of the multilinear interpolation along
one spatial axis and its window axis ((y, v) or (x, u); the op is separable in these two pairs).
"""

import torch

from .swap_align2nat import check_args

__all__ = ["swap_align2nat_reference", "swap_align2nat_at_reference"]


def _corners(s: torch.Tensor):
    """The two linear-interpolation corners (index, weight) of coordinates ``s``."""
    lo = torch.floor(s)
    frac = s - lo
    lo = lo.long()
    return ((lo, 1 - frac), (lo + 1, frac))


def _axis_samples(centers: torch.Tensor, lambda_val: int, v_in: int, size: int):
    """
    The corners read along one (spatial, window) axis pair by natural windows.

    Args:
        centers (Tensor[n], int64): window centres on the aligned grid (y * lambda for the dense
            op's output row y).
        lambda_val (int): the op's lambda; the natural window side is Vout = lambda * v_in.
        v_in (int): window side V of the aligned input.
        size (int): length of the spatial axis of the aligned input.

    Returns:
        index (Tensor[n, Vout, 4], int64): flat index ``window * size + spatial`` of each of the
            2 x 2 (spatial, window) corners of every cell (0 where invalid),
        weight (Tensor[n, Vout, 4], float64): product of the two linear weights,
        valid (Tensor[n, Vout, 4], bool): corner inside the input in both axes (else: pad).
    """
    v_out = v_in * lambda_val
    cells = torch.arange(v_out, device=centers.device, dtype=torch.float64)
    s_spatial = centers.to(torch.float64)[:, None] + (cells - v_out / 2 + 0.5)  # (n, Vout)
    s_window = (cells + 0.5) / lambda_val - 0.5  # (Vout,)
    index, weight, valid = [], [], []
    for sp_idx, sp_w in _corners(s_spatial):
        for win_idx, win_w in _corners(s_window):
            ok = (sp_idx >= 0) & (sp_idx < size) & ((win_idx >= 0) & (win_idx < v_in))[None]
            index.append(torch.where(ok, win_idx[None] * size + sp_idx, 0))
            weight.append(sp_w * win_w[None])
            valid.append(ok)
    return torch.stack(index, -1), torch.stack(weight, -1), torch.stack(valid, -1)


def _interpolate_axis_pair(t, samples, pad_val):
    # t: (..., V, size) -> (..., n, Vout): bilinear in its last two axes, pad outside.
    index, weight, valid = samples
    flat = t.reshape(*t.shape[:-2], t.shape[-2] * t.shape[-1])
    out = 0
    for c in range(index.shape[-1]):  # one corner at a time keeps the memory at ~3 outputs
        gathered = flat[..., index[..., c].reshape(-1)].reshape(*t.shape[:-2], *index.shape[:2])
        value = torch.where(valid[..., c], gathered, torch.full_like(gathered, pad_val))
        out = out + weight[..., c].to(t.dtype) * value
    return out


def swap_align2nat_reference(
    x: torch.Tensor, lambda_val: int, pad_val: float = -6.0
) -> torch.Tensor:
    """Pure-PyTorch :func:`swap_align2nat` (two separable gathers: (v, y), then (u, x))."""
    v_in = check_args(x, lambda_val)
    n, _, h_in, w_in = x.shape
    v_out = v_in * lambda_val
    h_out, w_out = -(-h_in // lambda_val), -(-w_in // lambda_val)
    rows = _axis_samples(torch.arange(h_out, device=x.device) * lambda_val, lambda_val, v_in, h_in)
    cols = _axis_samples(torch.arange(w_out, device=x.device) * lambda_val, lambda_val, v_in, w_in)
    # (N, V, U, H, W) -> (N, U, W, V, H): interpolate (v, y) -> (N, U, W, Hout, Vout)
    t = x.reshape(n, v_in, v_in, h_in, w_in).permute(0, 2, 4, 1, 3)
    t = _interpolate_axis_pair(t, rows, pad_val)
    # -> (N, Hout, Vout, U, W): interpolate (u, x) -> (N, Hout, Vout, Wout, Uout)
    t = _interpolate_axis_pair(t.permute(0, 3, 4, 1, 2), cols, pad_val)
    return t.permute(0, 2, 4, 1, 3).reshape(n, v_out * v_out, h_out, w_out)


def swap_align2nat_at_reference(
    x: torch.Tensor,
    image_ids: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    lambda_val: int,
    pad_val: float = -6.0,
) -> torch.Tensor:
    """Pure-PyTorch :func:`swap_align2nat_at` (one gather of all 16 corners of every cell)."""
    v_in = check_args(x, lambda_val, "swap_align2nat_at")
    _, _, h_in, w_in = x.shape
    row_index, row_w, row_ok = _axis_samples(rows, lambda_val, v_in, h_in)  # (n, Vout, 4)
    col_index, col_w, col_ok = _axis_samples(cols, lambda_val, v_in, w_in)
    # row_index = v' * H + y', col_index = u' * W + x'; x[i] flat: ((v' * V + u') * H + y') * W + x'
    v_row, y_row = row_index // h_in, row_index % h_in
    u_col, x_col = col_index // w_in, col_index % w_in
    flat_row = ((v_row * v_in)[:, :, :, None, None] * h_in + y_row[:, :, :, None, None]) * w_in
    flat_col = (u_col * h_in * w_in + x_col)[:, None, None]
    index = flat_row + flat_col  # (n, Vout, 4, Vout, 4)
    valid = row_ok[:, :, :, None, None] & col_ok[:, None, None]
    images = x.reshape(x.shape[0], -1)[image_ids]  # (n, V*V*H*W)
    values = torch.gather(images, 1, index.reshape(index.shape[0], -1)).reshape(index.shape)
    values = torch.where(valid, values, torch.full_like(values, pad_val))
    weight = row_w[:, :, :, None, None] * col_w[:, None, None]
    return (values * weight.to(x.dtype)).sum(dim=(2, 4))
