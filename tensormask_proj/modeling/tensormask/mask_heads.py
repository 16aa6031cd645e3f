"""
TensorMask's mask branch (paper §3-4, Fig. 6-8, Tab. 2): one component, :class:`MaskBranch`,
with the interface the meta-architecture uses, ``losses(features, assignment, gt_instances)``
in training and ``predict(features, detections)`` at inference, and one subclass per mask head
variant of the paper. :func:`build_mask_branch` picks the variant of a config.

Shape shorthand: N: images, L: levels (finest first), H_l, W_l: grid of level l, A: windows per
position, C: mask tower channels, S_a: window side of window (anchor) id a on the finest level
(``mask_sizes``), s_a: side predicted by the 1x1 conv, S_out: natural window side on level l
(S_a, or S_a * 2^l with the bipyramid), n: requested windows; F_l = mask_subnet(p_l)
(N, C, H_l, W_l), lambda_l = 2^l (stride of level l over the finest stride), H0, W0: finest
grid.

* :class:`NaturalMaskHead` (Fig. 6a/6c): mask_pred(F_l) read as natural windows, upsampled from
  s x s to S x S on the window axes when UPSCALE_FACTOR > 1. A window depends on F_l at its own
  position only.
* :class:`AlignedMaskHead` (Fig. 6b/6d): align2nat of the aligned windows mask_pred(F_l)
  (up_align2nat when UPSCALE_FACTOR > 1): swap_align2nat with lambda = 1.
* :class:`BipyramidMaskHead` (Fig. 7b/8): B_l = mask_fuse(up(F_l, 2^l) + F_0) on the finest
  grid, then swap_align2nat(mask_pred(B_l), lambda = 2^l).

Each variant computes the natural mask windows two ways; which one ``losses`` and ``predict``
use is the branch's own choice (``sparse_windows``, MODEL.TENSOR_MASK.SPARSE_WINDOWS):

* :meth:`MaskBranch.dense_mask_windows`: at every position of every level, as the official
  code;
* :meth:`MaskBranch.mask_windows` (default): at requested positions of one level only
  (positives in training, detections at inference). Both give the same windows (tested).

At requested positions the aligned variants call the compiled ``swap_align2nat_at`` once per
level and window id for all images. The bipyramid computes B_l only on the part of the finest
grid its windows read (the union over the level's requests): every step is local (a 3x3 conv,
a bilinear upsampling and the 1x1 predictors), so a crop grown by their reach and clipped to the
map gives the same values there (the conv's zero padding and the interpolation's border clamp
act only where the crop edge is the map edge).

The branch's modules keep the official names (``mask_subnet.*``, ``mask_pred_%02d``,
``align2nat``, ``align2nat_%02d``, ``up_align2nat_%02d``, ``mask_fuse.0``): the head that holds
the branch registers them as its own (``head.mask_subnet.*``), so official checkpoints load.
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec, cat
from detectron2.structures import Instances
from torch import nn

from tensormask_proj.layers import SwapAlign2Nat, swap_align2nat_at

from .anchor_generator import TensorMaskAnchorGenerator
from .assignment import PositiveWindows
from .losses import mask_loss
from .postprocess import MaskWindows
from .tower import conv_tower
from .up_align2nat import UpAlign2Nat, check_upscale_mode, upsample_windows

__all__ = [
    "MaskBranch",
    "NaturalMaskHead",
    "AlignedMaskHead",
    "BipyramidMaskHead",
    "build_mask_branch",
]

# Logit read by swap_align2nat outside the map and outside the windows: sigmoid(-6) ~ 0.0025.
PAD_VAL = -6.0


def _per_level(levels: torch.Tensor):
    """(level, indices of the entries of ``levels`` equal to it) for every level present."""
    order = torch.argsort(levels, stable=True)
    counts = torch.bincount(levels).tolist()
    return [
        (level, index)
        for level, index in enumerate(torch.split(order, counts))
        if counts[level] > 0
    ]


def _gt_mask_windows(gt_instances, image_ids, gt_index, window_boxes, side):
    """
    Ground-truth masks of positive windows (``image_ids`` non-decreasing): each matched object's
    mask cropped to its window box and resampled to side x side (Tensor[P, side, side], bool).
    """
    gt = []
    for i, count in enumerate(torch.bincount(image_ids).tolist()):
        if count == 0:
            continue
        mine = torch.nonzero(image_ids == i).flatten()
        gt_masks = gt_instances[i].gt_masks[gt_index[mine]]
        gt.append(gt_masks.crop_and_resize(window_boxes[mine], side))
    return cat(gt)


class MaskBranch(nn.Module):
    """
    The mask tower and the 1x1 window predictors, with the losses and predictions of the mask
    windows; each variant (subclass) adds its modules and computes the windows (see the module
    docstring).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        mask_sizes: Sequence[int],
        num_convs: int,
        channels: int = 128,
        norm: str = "",
        pred_sides: Optional[Sequence[int]] = None,
        sparse_windows: bool = True,
        loss_weight: float = 2.0,
        pos_weight: float = 1.5,
    ):
        """
        Args:
            in_channels (int): C_in, channels of the input maps.
            mask_sizes (list[int]): S_a for every window id a (A entries).
            num_convs (int): conv layers of the mask tower.
            channels (int): C, mask tower width.
            norm (str): norm of the mask tower ("" = none, official); the bipyramid's
                ``mask_fuse`` and the predictors are never normalised.
            pred_sides (list[int] or None): s_a predicted by each 1x1 conv (default S_a).
            sparse_windows (bool): compute the windows at the requested positions only (False:
                at every position, then select them, as the official code).
            loss_weight (float): weight of each positive window's mean mask BCE
                (MASK_LOSS_WEIGHT).
            pos_weight (float): BCE weight of foreground pixels (POSITIVE_WEIGHT).

        The holder initialises the parameters (:meth:`reset_parameters`) once every module of the
        head is built, so that a given seed gives the official initial weights.
        """
        super().__init__()
        if not mask_sizes:
            raise ValueError("The mask branch needs at least one window size")
        self.mask_sizes = [int(s) for s in mask_sizes]
        self.pred_sides = list(pred_sides) if pred_sides else list(self.mask_sizes)
        self.sparse_windows = sparse_windows
        self.loss_weight = loss_weight
        self.pos_weight = pos_weight
        self.mask_subnet = conv_tower(in_channels, channels, num_convs, norm)
        # Registered under the official names; indexed by window id through this list.
        self.mask_predictors = []
        for side, pred_side in zip(self.mask_sizes, self.pred_sides):
            conv = nn.Conv2d(channels, pred_side * pred_side, 1)
            self.add_module(f"mask_pred_{side:02d}", conv)
            self.mask_predictors.append(conv)

    @property
    def num_anchors(self) -> int:
        """A, one window size per window id."""
        return len(self.mask_sizes)

    def reset_parameters(self) -> None:
        """The official initialisation: conv weights N(0, 0.01), biases 0, in module order."""
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, mean=0, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    # ---------------------------------------------------------------------------------------- #
    def losses(
        self,
        features: List[torch.Tensor],
        assignment: PositiveWindows,
        gt_instances: List[Instances],
    ) -> torch.Tensor:
        """
        The mask loss (``loss_mask``): sum over the positive windows of the weighted mean BCE of
        their natural windows against the matched objects' masks cropped to the window boxes,
        divided by ``assignment.normalizer``.

        Args:
            features (list[Tensor[N, C_in, H_l, W_l]]): the head's input maps.
            assignment: the batch's positive windows.
            gt_instances (list[Instances]): per image, ``gt_masks`` of its objects.

        Returns:
            scalar Tensor.
        """
        # Zero-weighted sum over the branch keeps every parameter in the graph when a window
        # size has no positive (needed by DistributedDataParallel).
        loss = sum(p.sum() for p in self.parameters()) * 0
        if len(assignment) == 0:
            return loss
        computed = self._compute(features)
        image_ids, gt_index = assignment.image_ids, assignment.gt_index
        levels, ys, xs, anchor_ids = assignment.locations.unbind(dim=1)
        for level, at_level in _per_level(levels):
            pred_windows = self._level_windows(
                computed,
                level,
                image_ids[at_level],
                ys[at_level],
                xs[at_level],
                anchor_ids[at_level],
            )
            for a, pred in enumerate(pred_windows):
                if pred is None:
                    continue
                sel = at_level[anchor_ids[at_level] == a]
                gt = _gt_mask_windows(
                    gt_instances,
                    image_ids[sel],
                    gt_index[sel],
                    assignment.boxes[sel],
                    self.window_side(level, a),
                )
                loss = loss + mask_loss(
                    pred,
                    gt.to(pred.device),
                    self.loss_weight,
                    self.pos_weight,
                    assignment.normalizer,
                )
        return loss

    def predict(self, features: List[torch.Tensor], detections: List[Instances]):
        """
        The natural mask windows of detections.

        Args:
            features (list[Tensor[N, C_in, H_l, W_l]]): the head's input maps.
            detections (list[Instances]): per image, D detections with ``window_locations``
                (Tensor[D, 4], int64: level, grid row, grid column and window id of each
                detection's window; several detections may share a window).

        Returns:
            ``detections``, each given ``pred_mask_windows`` (:class:`MaskWindows` of D logit
            tensors (S_out, S_out)).
        """
        computed = self._compute(features)
        for image, inst in enumerate(detections):
            windows = self._image_windows(computed, image, inst.window_locations)
            inst.pred_mask_windows = MaskWindows(windows)
        return detections

    def _compute(self, features: List[torch.Tensor]):
        """What :meth:`_level_windows` reads: the mask features (sparse) or the dense windows."""
        if self.sparse_windows:
            return self.mask_features(features)
        return self.dense_mask_windows(features)

    def _level_windows(self, computed, level, image_ids, ys, xs, anchor_ids):
        """:meth:`mask_windows`, from what :meth:`_compute` returned."""
        if self.sparse_windows:
            return self.mask_windows(computed, level, image_ids, ys, xs, anchor_ids)
        out: List[Optional[torch.Tensor]] = []
        for a, dense in enumerate(computed[level]):
            sel = anchor_ids == a
            if not bool(sel.any()):
                out.append(None)
                continue
            side = self.window_side(level, a)
            out.append(dense[image_ids[sel], :, ys[sel], xs[sel]].reshape(-1, side, side))
        return out

    def _image_windows(self, computed, image: int, locations: torch.Tensor):
        """The windows at ``locations`` (Tensor[D, 4]) of one image, as a list of D tensors."""
        if locations.shape[0] == 0:
            return []
        # Each distinct window once, in window index order (level, row, column, window id).
        unique, inverse = torch.unique(locations, dim=0, return_inverse=True)
        out: List[Optional[torch.Tensor]] = [None] * unique.shape[0]
        levels, ys, xs, anchor_ids = unique.unbind(dim=1)
        for level, at_level in _per_level(levels):
            per_anchor = self._level_windows(
                computed,
                level,
                torch.full_like(at_level, image),
                ys[at_level],
                xs[at_level],
                anchor_ids[at_level],
            )
            for a, pred in enumerate(per_anchor):
                if pred is None:
                    continue
                for j, window in zip(at_level[anchor_ids[at_level] == a].tolist(), pred):
                    out[j] = window
        return [out[j] for j in inverse.tolist()]

    # ---------------------------------------------------------------------------------------- #
    def window_side(self, level: int, anchor_id: int) -> int:
        """S_out: side of the natural windows of (level, window id)."""
        return self.mask_sizes[anchor_id]

    def mask_predictor(self, anchor_id: int) -> nn.Module:
        """The 1x1 conv ``mask_pred_%02d`` of window id a."""
        return self.mask_predictors[anchor_id]

    def mask_features(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """
        What :meth:`mask_windows` computes windows from: the mask tower F_l of every level.

        Returns:
            list[Tensor[N, C, H_l, W_l]]
        """
        return [self.mask_subnet(x) for x in features]

    def dense_mask_windows(self, features: List[torch.Tensor]) -> List[List[torch.Tensor]]:
        """
        Natural mask windows at every position of every level (the official computation).

        Args:
            features (list[Tensor[N, C_in, H_l, W_l]]): the head's input maps.

        Returns:
            list[list[Tensor[N, S_out^2, H_l, W_l]]]: indexed [level][window id] (channel
            v*S_out + u).
        """
        raise NotImplementedError

    def mask_windows(
        self,
        mask_features: List[torch.Tensor],
        level: int,
        image_ids: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        anchor_ids: torch.Tensor,
    ) -> List[Optional[torch.Tensor]]:
        """
        Natural mask windows of level ``level`` at requested positions, equal to the
        corresponding entries of :meth:`dense_mask_windows`.

        Args:
            mask_features: the output of :meth:`mask_features`.
            level (int): l.
            image_ids, ys, xs, anchor_ids (Tensor[n], int64): requested (image, row, column,
                window id) on level l's grid.

        Returns:
            list over window ids a of Tensor[n_a, S_out, S_out] (the requests with
            ``anchor_ids == a``, in request order), or None when no request has window id a.
        """
        raise NotImplementedError

    def requests_per_window_id(self, anchor_ids: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """Indices of the requests of each window id a (None where there is none)."""
        present = torch.bincount(anchor_ids, minlength=self.num_anchors).tolist()
        return [
            torch.nonzero(anchor_ids == a).flatten() if count else None
            for a, count in enumerate(present)
        ]


class _UpscalingMaskHead(MaskBranch):
    """Natural and aligned heads: one window per position, optionally upscaled (Tab. 2a/2b)."""

    def __init__(
        self,
        *,
        mask_sizes: Sequence[int],
        upscale_factor: float = 1.0,
        upscale_mode: str = "bilinear",
        **kwargs,
    ):
        """
        Args:
            upscale_factor (float): lambda of the upscaling heads (1 = simple head): the 1x1 conv
                predicts s = S / lambda cells per side, upsampled to S.
            upscale_mode (str): "bilinear" or "nearest" window upsampling.
            others: see :class:`MaskBranch`.
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
        super().__init__(mask_sizes=mask_sizes, pred_sides=pred_sides, **kwargs)
        self.upscale_mode = upscale_mode

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

    def __init__(self, **kwargs):
        """Args: see :class:`_UpscalingMaskHead`."""
        super().__init__(**kwargs)
        # Parameterless converters after the predictors, named as the official head's
        # ``align2nat`` (simple aligned head); ``to_natural[a]`` is window id a's.
        self.to_natural = []
        for side, pred_side in zip(self.mask_sizes, self.pred_sides):
            if pred_side == side:
                name, module = "align2nat", SwapAlign2Nat(1, PAD_VAL)
            else:
                name = f"up_align2nat_{side:02d}"
                module = UpAlign2Nat(side, self.upscale_mode, PAD_VAL)
            if not hasattr(self, name):
                self.add_module(name, module)
            self.to_natural.append(getattr(self, name))

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


class BipyramidMaskHead(MaskBranch):
    """The tensor bipyramid (see the module docstring)."""

    def __init__(self, *, strides: Sequence[int], channels: int = 128, **kwargs):
        """
        Args:
            strides (list[int]): strides of the L input levels, finest first.
            others: see :class:`MaskBranch`.
        """
        # lambda_l: ratio of level l's stride to the finest one (2^l for P2..P7).
        for stride in strides:
            if stride % strides[0] != 0:
                raise ValueError(
                    "The tensor bipyramid needs every level's stride to be a multiple of the "
                    f"finest one, got strides {list(strides)} (MODEL.TENSOR_MASK.IN_FEATURES)"
                )
        super().__init__(channels=channels, **kwargs)
        self.lambdas = [stride // strides[0] for stride in strides]
        # Parameterless ``align2nat_%02d`` per level (``to_natural[l]``), named as the official
        # head's, then mask_fuse, after the predictors.
        self.to_natural = []
        for level, lam in enumerate(self.lambdas):
            module = SwapAlign2Nat(lam, PAD_VAL)
            self.add_module(f"align2nat_{level:02d}", module)
            self.to_natural.append(module)
        self.mask_fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())

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


def build_mask_branch(cfg, input_shape: List[ShapeSpec]) -> MaskBranch:
    """
    The mask branch of ``cfg``'s variant: the tensor bipyramid (BIPYRAMID_ON), aligned windows
    (ALIGNED_ON, with up_align2nat when UPSCALE_FACTOR > 1) or natural windows (possibly
    upscaled). The combinations are validated by ``check_tensormask_config``.

    Args:
        input_shape: shapes of the L input feature maps, finest first.
    """
    tm = cfg.MODEL.TENSOR_MASK
    strides = [s.stride for s in input_shape]
    args = {
        "in_channels": input_shape[0].channels,
        "mask_sizes": TensorMaskAnchorGenerator.window_cells(
            cfg.MODEL.ANCHOR_GENERATOR.SIZES, strides
        ),
        "num_convs": tm.NUM_CONVS,
        "channels": tm.MASK_CHANNELS,
        "norm": tm.HEAD_NORM,
        "sparse_windows": tm.SPARSE_WINDOWS,
        "loss_weight": tm.MASK_LOSS_WEIGHT,
        "pos_weight": tm.POSITIVE_WEIGHT,
    }
    if tm.BIPYRAMID_ON:
        return BipyramidMaskHead(strides=strides, **args)
    upscaling = {"upscale_factor": tm.UPSCALE_FACTOR, "upscale_mode": tm.UPSCALE_MODE}
    if tm.ALIGNED_ON:
        return AlignedMaskHead(**upscaling, **args)
    return NaturalMaskHead(**upscaling, **args)
