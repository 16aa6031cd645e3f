"""
Upscaling of the window axes of a 4-D mask tensor, and ``up_align2nat`` (paper §3.5, Fig. 4).

Shape shorthand:
    N: images, H, W: spatial size of the tensor (one window per position),
    s: side of the input windows, S = lambda * s: side of the output windows.
    A window tensor is stored as (N, s*s, H, W) with channel ``v * s + u`` (v along y, u along x).

The upscaling baseline heads of the paper (Fig. 6c/6d, Tab. 2a/2b) predict a coarse s x s window
with the 1x1 conv and upsample its (V, U) sub-tensor by lambda (which may be non-integer, e.g.
1.5: 10 -> 15). Only the window axes are resampled, independently at every position (y, x), so
the operation commutes with cropping the spatial axes (the sparse inference relies on that).

* "bilinear": ``align_corners=False`` linear interpolation in v and in u, with the border
  replicated (``F.interpolate``'s convention). This is the paper's aligned upscaling.
* "nearest": the centre-aligned nearest neighbour (``F.interpolate``'s "nearest-exact":
  cell v reads cell floor((v + 0.5) * s / S)), symmetric about the window centre; with it the
  aligned head is the paper's "unaligned" head (§A.2, InstanceFCN).

``up_align2nat`` = upsample the window axes of an *aligned* tensor, then ``align2nat`` at equal
units (``swap_align2nat`` with lambda = 1). The units of the output are sigma_VU = sigma_HW.
"""

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from tensormask_proj.layers import swap_align2nat

__all__ = [
    "UPSCALE_MODES",
    "check_upscale_mode",
    "upsample_windows",
    "up_align2nat",
    "UpAlign2Nat",
]

# config name -> F.interpolate mode (1-D)
UPSCALE_MODES = {"bilinear": "linear", "nearest": "nearest-exact"}


def check_upscale_mode(mode: str, name: str = "mode") -> None:
    """
    Raise ``ValueError`` unless ``mode`` is one of :data:`UPSCALE_MODES`; the message names the
    value as ``name`` (the config key where a user set it).
    """
    if mode not in UPSCALE_MODES:
        choices = " or ".join(repr(m) for m in UPSCALE_MODES)
        raise ValueError(f"{name} must be {choices}, got {mode!r}")


@lru_cache(maxsize=64)
def _interpolation_matrix_cpu(in_size: int, out_size: int, mode: str) -> torch.Tensor:
    # 1-D interpolation is linear in its input: applying it to the unit vectors gives its matrix.
    # (The 2-D bilinear / nearest resampling of F.interpolate is the separable product of these.)
    eye = torch.eye(in_size, dtype=torch.float64).unsqueeze(1)  # (in, 1, in): row i = e_i
    kwargs = {"align_corners": False} if mode == "linear" else {}
    out = F.interpolate(eye, size=out_size, mode=mode, **kwargs)  # (in, 1, out)
    return out[:, 0, :].t().contiguous()  # (out, in)


def interpolation_matrix(in_size: int, out_size: int, mode: str, like: torch.Tensor):
    """
    The (out_size, in_size) matrix M of the 1-D resampling: ``out = M @ in``.

    Args:
        mode: "bilinear" or "nearest" (see the module docstring).
        like: tensor whose dtype and device the matrix gets.
    """
    check_upscale_mode(mode, "the window upscaling mode")
    m = _interpolation_matrix_cpu(in_size, out_size, UPSCALE_MODES[mode])
    return m.to(dtype=like.dtype, device=like.device)


def _window_side(x: torch.Tensor, name: str) -> int:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (N, s*s, H, W) tensor, got shape {tuple(x.shape)}")
    side = int(round(x.shape[1] ** 0.5))
    if side * side != x.shape[1]:
        raise ValueError(
            f"{name}: the channel count {x.shape[1]} of the input {tuple(x.shape)} is not a "
            "perfect square (square windows only)"
        )
    return side


def upsample_windows(x: torch.Tensor, out_side: int, mode: str = "bilinear") -> torch.Tensor:
    """
    Resample the window axes of a window tensor.

    Args:
        x (Tensor[N, s*s, H, W]): window tensor (natural or aligned).
        out_side (int): output window side S.
        mode (str): "bilinear" or "nearest".

    Returns:
        Tensor[N, S*S, H, W]
    """
    s = _window_side(x, "upsample_windows")
    if s == out_side:
        return x
    m = interpolation_matrix(s, out_side, mode, x)
    n, _, h, w = x.shape
    x = x.reshape(n, s, s, h, w)
    # out[n, v, u] = sum_ij M[v, i] M[u, j] x[n, i, j]
    out = torch.einsum("vi,nijhw,uj->nvuhw", m, x, m)
    return out.reshape(n, out_side * out_side, h, w)


def up_align2nat(
    x: torch.Tensor, out_side: int, mode: str = "bilinear", pad_val: float = -6.0
) -> torch.Tensor:
    """
    ``up_align2nat`` of the paper (Fig. 4): upsample the (V^, U^) sub-tensor of an aligned tensor
    to ``out_side`` then convert it to the natural representation at equal units.

    Args:
        x (Tensor[N, s*s, H, W]): aligned window tensor with coarse windows.
        out_side (int): output window side S (S / s is the upscaling factor lambda).
        mode (str): "bilinear" or "nearest".
        pad_val (float): logit read for window cells outside the map (see ``swap_align2nat``).

    Returns:
        Tensor[N, S*S, H, W]: natural window tensor.
    """
    return swap_align2nat(upsample_windows(x, out_side, mode), 1, pad_val)


class UpAlign2Nat(nn.Module):
    """Module form of :func:`up_align2nat` (no parameters)."""

    def __init__(self, out_side: int, mode: str = "bilinear", pad_val: float = -6.0):
        super().__init__()
        check_upscale_mode(mode, "UpAlign2Nat: mode")
        self.out_side = out_side
        self.mode = mode
        self.pad_val = float(pad_val)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return up_align2nat(x, self.out_side, self.mode, self.pad_val)

    def extra_repr(self) -> str:
        return f"out_side={self.out_side}, mode={self.mode}, pad_val={self.pad_val}"
