"""
``swap_align2nat`` evaluated at a few output positions only.

Shape shorthand:
    V: window side of the aligned input, Vout = lambda * V: window side of the natural output,
    h, w: size of the (cropped) aligned input, H, W: size of the full aligned map it was cut from,
    n: number of requested output positions.

The dense op (``tensormask_proj.layers.swap_align2nat``) returns the natural windows at *every*
position of the coarse grid; inference keeps about 100 of them and training uses only the positive
windows. The natural window at output position (y, x) reads the aligned map only in the rows
[y*lambda - Vout//2, y*lambda + Vout//2] (and likewise columns), so it can be computed from a crop
of the aligned map that covers those rows, without computing any other window. This module
evaluates the op's sampling formula (documented in ``tensormask_proj/layers/swap_align2nat.py``)
for the requested positions: for every output cell, the 16 corners of the multilinear
interpolation in (y, v, x, u), with ``pad_val`` for every corner outside the *full* map (rows,
columns, or the window axes). Coordinates are computed in float32 (float64 for float64 input) like
the op's kernels, so the result matches the dense op to float rounding (tested).

The computation is a gather followed by a weighted sum: it is differentiable (the gather's
backward scatters into the crop), so training uses it as well.
"""
from typing import Tuple

import torch

__all__ = ["window_rows", "swap_align2nat_at"]


def window_rows(
    centers: torch.Tensor, lambda_val: int, v_out: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The first and last aligned-map rows (or columns) read by the natural windows at ``centers``.

    Args:
        centers (Tensor[n], int64): output rows y (or columns x) on the natural grid.
        lambda_val (int): the op's lambda.
        v_out (int): natural window side Vout.

    Returns:
        (lo, hi) (Tensor[n] each): inclusive bounds, *not* clipped to the map. The sampling rows
        are y*lambda + v - Vout/2 + 0.5 for v in [0, Vout), whose floor/ceil span exactly
        [y*lambda - Vout//2, y*lambda + Vout//2].
    """
    base = centers * lambda_val
    return base - v_out // 2, base + v_out // 2


def _corners(coords: torch.Tensor):
    # Two linear-interpolation corners of float32 coordinates, as the op computes them: floor and
    # ceil (equal for integer coordinates; the second then has weight 0).
    lo = torch.floor(coords)
    hi = torch.ceil(coords)
    w_hi = coords - lo
    return (lo.long(), 1 - w_hi), (hi.long(), w_hi)


def _axis_corners(centers, lambda_val, v_in, v_out, full_size, origin, dtype):
    """
    Row (or column) corners of the natural windows at ``centers``.

    Returns:
        spatial (Tensor[n, Vout, 4]): crop-relative spatial index of each corner,
        window (Tensor[Vout, 4]): window index (v' or u') of each corner,
        weight (Tensor[n, Vout, 4]): interpolation weight (product of the two axes' weights),
        valid (Tensor[n, Vout, 4]): corner inside the full map in both axes.
    """
    cells = torch.arange(v_out, device=centers.device, dtype=dtype)
    offsets = cells - v_out / 2 + 0.5  # exact in floating point
    s_spatial = centers.to(dtype)[:, None] * lambda_val + offsets[None, :]  # (n, Vout)
    s_window = (cells + 0.5) / lambda_val - 0.5  # (Vout,)

    spatial, window, weight, valid = [], [], [], []
    for sp_idx, sp_w in _corners(s_spatial):
        for win_idx, win_w in _corners(s_window):
            spatial.append(sp_idx - origin)
            window.append(win_idx)
            weight.append(sp_w * win_w[None, :])
            valid.append(
                (sp_idx >= 0) & (sp_idx < full_size) & ((win_idx >= 0) & (win_idx < v_in))[None, :]
            )
    return (
        torch.stack(spatial, dim=-1),
        torch.stack(window, dim=-1),
        torch.stack(weight, dim=-1),
        torch.stack(valid, dim=-1),
    )


def swap_align2nat_at(
    aligned: torch.Tensor,
    lambda_val: int,
    pad_val: float,
    ys: torch.Tensor,
    xs: torch.Tensor,
    origin: Tuple[int, int] = (0, 0),
    full_size: Tuple[int, int] = None,
) -> torch.Tensor:
    """
    Natural windows of ``swap_align2nat(full_aligned[None], lambda_val, pad_val)[0, :, y, x]`` for
    the requested (y, x), computed from a crop of the aligned map.

    Args:
        aligned (Tensor[V*V, h, w]): the crop ``full_aligned[:, oy:oy+h, ox:ox+w]`` of the aligned
            map of one image. It must contain every in-map row/column read by the requested
            windows (see :func:`window_rows`); outside the *full* map the op reads ``pad_val``.
        lambda_val (int): the op's lambda (>= 1).
        pad_val (float): value read outside the full map and outside the window axes.
        ys, xs (Tensor[n], int64): output positions on the natural (coarse) grid.
        origin (int, int): (oy, ox), position of the crop in the full aligned map.
        full_size (int, int): (H, W) of the full aligned map; default: the crop is the full map.

    Returns:
        Tensor[n, Vout, Vout]: natural windows (rows v along y, columns u along x).
    """
    v2, h, w = aligned.shape
    v_in = int(round(v2 ** 0.5))
    if v_in * v_in != v2:
        raise ValueError(f"swap_align2nat_at: channel count {v2} is not a perfect square")
    if full_size is None:
        full_size = (h, w)
    v_out = v_in * lambda_val
    n = ys.numel()
    if n == 0:
        return aligned.new_zeros((0, v_out, v_out))

    # Coordinates in the input's precision (float32 for float32 maps, as the op's kernels).
    dtype = torch.float64 if aligned.dtype == torch.float64 else torch.float32
    r_sp, r_win, r_w, r_valid = _axis_corners(
        ys, lambda_val, v_in, v_out, full_size[0], origin[0], dtype
    )
    c_sp, c_win, c_w, c_valid = _axis_corners(
        xs, lambda_val, v_in, v_out, full_size[1], origin[1], dtype
    )
    inside = (
        ((r_sp >= 0) & (r_sp < h)) | ~r_valid
    ).all() & (((c_sp >= 0) & (c_sp < w)) | ~c_valid).all()
    if not bool(inside):
        raise ValueError(
            f"swap_align2nat_at: the crop of shape {tuple(aligned.shape)} at origin {origin} does "
            "not cover the rows/columns read by the requested windows"
        )
    # Flat index of aligned[v'*V + u', y', x'] = ((v' * V + u') * h + y') * w + x', split in a
    # row part (v', y') and a column part (u', x'); invalid corners point at element 0 and are
    # replaced by pad below.
    row_index = (r_win[None] * v_in * h + r_sp) * w  # (n, Vout, 4)
    col_index = c_win[None] * h * w + c_sp  # (n, Vout, 4)
    row_index = torch.where(r_valid, row_index, torch.zeros_like(row_index))
    col_index = torch.where(c_valid, col_index, torch.zeros_like(col_index))
    index = row_index[:, :, :, None, None] + col_index[:, None, None, :, :]  # (n, Vout, 4, Vout, 4)
    valid = r_valid[:, :, :, None, None] & c_valid[:, None, None, :, :]
    values = aligned.reshape(-1)[index.reshape(-1)].reshape(index.shape)
    values = torch.where(valid, values, values.new_tensor(pad_val))
    r_w = r_w.to(aligned.dtype)
    c_w = c_w.to(aligned.dtype)
    return torch.einsum("nvi,nviuj,nuj->nvu", r_w, values, c_w)
