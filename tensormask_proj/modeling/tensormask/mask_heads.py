"""
The mask head variants of TensorMask (paper §3-4, Fig. 6-8, Tab. 2), one class each.

Shape shorthand: see ``head.py``; F_l = mask_subnet(p_l) (N, C, H_l, W_l), lambda_l = 2^l
(stride of level l over the finest stride), H0, W0: finest grid.

* :class:`NaturalMaskHead` (Fig. 6a/6c): mask_pred(F_l) read as natural windows, upsampled from
  s x s to S x S on the window axes when UPSCALE_FACTOR > 1. A window depends on F_l at its own
  position only.
* :class:`AlignedMaskHead` (Fig. 6b/6d): align2nat of the aligned windows mask_pred(F_l)
  (up_align2nat when UPSCALE_FACTOR > 1): swap_align2nat with lambda = 1.
* :class:`BipyramidMaskHead` (Fig. 7b/8): B_l = mask_fuse(up(F_l, 2^l) + F_0) on the finest
  grid, then swap_align2nat(mask_pred(B_l), lambda = 2^l).

At requested positions the aligned variants call the compiled ``swap_align2nat_at`` once per
level and window id for all images. The bipyramid computes B_l only on the part of the finest
grid its windows read (the union over the level's requests): every step is local (a 3x3 conv,
a bilinear upsampling and the 1x1 predictors), so a crop grown by their reach and clipped to the
map gives the same values there (the conv's zero padding and the interpolation's border clamp
act only where the crop edge is the map edge).
"""

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from tensormask_proj.layers import SwapAlign2Nat, swap_align2nat_at

from .head import PAD_VAL, TensorMaskHead
from .up_align2nat import UpAlign2Nat, check_upscale_mode, upsample_windows

__all__ = ["NaturalMaskHead", "AlignedMaskHead", "BipyramidMaskHead"]


class _UpscalingMaskHead(TensorMaskHead):
    """Natural and aligned heads: one window per position, optionally upscaled (Tab. 2a/2b)."""

    @configurable
    def __init__(self, *, mask_sizes, upscale_factor=1.0, upscale_mode="bilinear", **kwargs):
        """
        Args:
            upscale_factor (float): lambda of the upscaling heads (1 = simple head): the 1x1 conv
                predicts s = S / lambda cells per side, upsampled to S.
            upscale_mode (str): "bilinear" or "nearest" window upsampling.
            others: see :class:`TensorMaskHead`.
        """
        check_upscale_mode(upscale_mode, "MODEL.TENSOR_MASK.UPSCALE_MODE")
        if upscale_factor < 1.0:
            raise ValueError(f"MODEL.TENSOR_MASK.UPSCALE_FACTOR must be >= 1, got {upscale_factor}")
        pred_sides = []
        for side in mask_sizes:
            pred = side / upscale_factor
            if abs(pred - round(pred)) > 1e-6 or round(pred) < 1:
                raise ValueError(
                    f"MODEL.TENSOR_MASK.UPSCALE_FACTOR={upscale_factor} does not divide the "
                    f"window side {side} (window sizes {list(mask_sizes)}, from "
                    "MODEL.ANCHOR_GENERATOR.SIZES[0] / finest stride)"
                )
            pred_sides.append(int(round(pred)))
        self.upscale_mode = upscale_mode  # (read by _variant_modules, called by super)
        super().__init__(mask_sizes=mask_sizes, pred_sides=pred_sides, **kwargs)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["upscale_factor"] = cfg.MODEL.TENSOR_MASK.UPSCALE_FACTOR
        ret["upscale_mode"] = cfg.MODEL.TENSOR_MASK.UPSCALE_MODE
        return ret

    def _predict(self, tower: torch.Tensor, anchor_id: int) -> torch.Tensor:
        """(N, C, H, W) -> (N, S^2, H, W): the predictor's windows upsampled to S x S."""
        pred = self.mask_predictor(anchor_id)(tower)
        return upsample_windows(pred, self.mask_sizes[anchor_id], self.upscale_mode)


class NaturalMaskHead(_UpscalingMaskHead):
    """mask_pred(F_l) read as natural windows (see the module docstring)."""

    def dense_mask_windows(self, features):
        return [
            [self._predict(tower, a) for a in range(self.num_anchors)]
            for tower in self.mask_features(features)
        ]

    def mask_windows(self, mask_features, level, image_ids, ys, xs, anchor_ids):
        # A 1x1 conv at a few positions is a matrix product with their feature vectors.
        at = mask_features[level][image_ids, :, ys, xs]  # (n, C)
        out = []
        for a, index in enumerate(self.requests_per_window_id(anchor_ids)):
            if index is None:
                out.append(None)
                continue
            conv = self.mask_predictor(a)
            pred = F.linear(at[index], conv.weight.flatten(1), conv.bias)  # (n_a, s^2)
            side = self.mask_sizes[a]
            windows = upsample_windows(pred[:, :, None, None], side, self.upscale_mode)
            out.append(windows.view(-1, side, side))
        return out


class AlignedMaskHead(_UpscalingMaskHead):
    """Aligned windows converted by align2nat / up_align2nat (see the module docstring)."""

    def _variant_modules(self, mask_channels: int) -> Dict[str, nn.Module]:
        # Parameterless converters, named as the official head's ``align2nat`` (simple aligned
        # head); ``to_natural[a]`` is window id a's.
        modules, self.to_natural = {}, []
        for side, pred_side in zip(self.mask_sizes, self.pred_sides):
            if pred_side == side:
                name, module = "align2nat", SwapAlign2Nat(1, PAD_VAL)
            else:
                name = f"up_align2nat_{side:02d}"
                module = UpAlign2Nat(side, self.upscale_mode, PAD_VAL)
            module = modules.setdefault(name, module)
            self.to_natural.append(module)
        return modules

    def dense_mask_windows(self, features):
        return [
            [self.to_natural[a](self.mask_predictor(a)(tower)) for a in range(self.num_anchors)]
            for tower in self.mask_features(features)
        ]

    def mask_windows(self, mask_features, level, image_ids, ys, xs, anchor_ids):
        tower = mask_features[level]
        out = []
        for a, index in enumerate(self.requests_per_window_id(anchor_ids)):
            if index is None:
                out.append(None)
                continue
            aligned = self._predict(tower, a)
            out.append(
                swap_align2nat_at(aligned, image_ids[index], ys[index], xs[index], 1, PAD_VAL)
            )
        return out


def _coarse_cells(lo: int, hi: int, lam: int, size: int) -> Tuple[int, int]:
    # Coarse cells read by bilinear upsampling by lam (align_corners=False) at fine rows lo..hi:
    # source row (y + 0.5) / lam - 0.5, its floor and the next cell (clamped to the map).
    first = max(0, (2 * lo + 1 - lam) // (2 * lam))
    last = min(size - 1, (2 * hi + 1 - lam) // (2 * lam) + 1)
    return first, last


def _crop(x: torch.Tensor, region) -> torch.Tensor:
    r0, r1, c0, c1 = region
    return x[:, :, r0 : r1 + 1, c0 : c1 + 1]


class BipyramidMaskHead(TensorMaskHead):
    """The tensor bipyramid (see the module docstring)."""

    def _variant_modules(self, mask_channels: int) -> Dict[str, nn.Module]:
        # lambda_l: ratio of level l's stride to the finest one (2^l for P2..P7).
        self.lambdas = []
        for stride in self.strides:
            if stride % self.strides[0] != 0:
                raise ValueError(
                    "The tensor bipyramid needs every level's stride to be a multiple of the "
                    f"finest one, got strides {self.strides} (MODEL.TENSOR_MASK.IN_FEATURES)"
                )
            self.lambdas.append(stride // self.strides[0])
        # Parameterless ``align2nat_%02d`` per level (``to_natural[l]``), named as the official
        # head's, then mask_fuse.
        self.to_natural = [SwapAlign2Nat(lam, PAD_VAL) for lam in self.lambdas]
        modules = {f"align2nat_{level:02d}": m for level, m in enumerate(self.to_natural)}
        modules["mask_fuse"] = nn.Sequential(
            nn.Conv2d(mask_channels, mask_channels, 3, padding=1), nn.ReLU()
        )
        return modules

    def window_side(self, level: int, anchor_id: int) -> int:
        return self.mask_sizes[anchor_id] * self.lambdas[level]

    def upsample_to_finest(self, tower: torch.Tensor, level: int, height: int, width: int):
        """
        Paper Fig. 8: level l's mask-tower output upsampled bilinearly by 2^l to the finest grid
        (cropped to its ``height`` x ``width``; the finest level is returned as it is).
        """
        lam = self.lambdas[level]
        if lam == 1:
            return tower
        up = F.interpolate(tower, scale_factor=lam, mode="bilinear", align_corners=False)
        return up[:, :, :height, :width]

    def dense_mask_windows(self, features):
        towers = self.mask_features(features)
        finest = towers[0]
        height, width = finest.shape[-2:]
        out = []
        for level, tower in enumerate(towers):
            fused = self.mask_fuse(self.upsample_to_finest(tower, level, height, width) + finest)
            to_natural = self.to_natural[level]
            out.append([to_natural(self.mask_predictor(a)(fused)) for a in range(self.num_anchors)])
        return out

    def _fused_region(self, towers, level: int, region):
        """B_l = mask_fuse(up(F_l) + F_0) on ``region`` (r0, r1, c0, c1) of the finest grid."""
        height, width = towers[0].shape[-2:]
        r0, r1, c0, c1 = region
        # mask_fuse is a 3x3 conv: one more ring of its input, clipped to the map.
        grown = (max(r0 - 1, 0), min(r1 + 1, height - 1), max(c0 - 1, 0), min(c1 + 1, width - 1))
        finest = _crop(towers[0], grown)
        lam = self.lambdas[level]
        if lam == 1:
            upsampled = finest
        else:
            coarse_h, coarse_w = towers[level].shape[-2:]
            q0, q1 = _coarse_cells(grown[0], grown[1], lam, coarse_h)
            p0, p1 = _coarse_cells(grown[2], grown[3], lam, coarse_w)
            coarse = _crop(towers[level], (q0, q1, p0, p1))
            up = F.interpolate(coarse, scale_factor=lam, mode="bilinear", align_corners=False)
            upsampled = _crop(
                up,
                (
                    grown[0] - q0 * lam,
                    grown[1] - q0 * lam,
                    grown[2] - p0 * lam,
                    grown[3] - p0 * lam,
                ),
            )
        fused = self.mask_fuse(upsampled + finest)
        return _crop(fused, (r0 - grown[0], r1 - grown[0], c0 - grown[2], c1 - grown[2]))

    def mask_windows(self, mask_features, level, image_ids, ys, xs, anchor_ids):
        if ys.numel() == 0:
            return [None] * self.num_anchors
        lam = self.lambdas[level]
        height, width = mask_features[0].shape[-2:]
        # Window centres on the finest grid; a window of side S_out reads the rows
        # [centre - S_out // 2, centre + S_out // 2] (swap_align2nat_at's docstring).
        rows, cols = ys * lam, xs * lam
        reach = max(self.window_side(level, a) for a in range(self.num_anchors)) // 2
        bounds = torch.stack([rows.min(), rows.max(), cols.min(), cols.max()]).tolist()
        region = (
            max(bounds[0] - reach, 0),
            min(bounds[1] + reach, height - 1),
            max(bounds[2] - reach, 0),
            min(bounds[3] + reach, width - 1),
        )
        fused = self._fused_region(mask_features, level, region)
        rows, cols = rows - region[0], cols - region[2]
        out = []
        for a, index in enumerate(self.requests_per_window_id(anchor_ids)):
            if index is None:
                out.append(None)
                continue
            aligned = self.mask_predictor(a)(fused)
            out.append(
                swap_align2nat_at(aligned, image_ids[index], rows[index], cols[index], lam, PAD_VAL)
            )
        return out
