"""
The TensorMask head: classification, box and mask branches shared across the pyramid levels
(paper §4.1, Fig. 6-8; official ``TensorMaskHead``).

Shape shorthand / naming:
    N: images, L: levels (finest first), H_l, W_l: grid of level l, A: windows per position,
    K: classes, S_a: window side of window (anchor) id a on the finest level (``mask_sizes``),
    s_a: side predicted by the 1x1 conv (S_a / UPSCALE_FACTOR), S_out: natural window side on
    level l (S_a, or S_a * 2^l with the bipyramid).

Mask head variants (all produce *natural* windows, the output format of the network):
    natural (Fig. 6a/6c):  mask_pred_S(F_l) read as natural windows (upsampled if s < S);
    aligned (Fig. 6b/6d):  align2nat(mask_pred_S(F_l)) (up_align2nat if s < S);
    bipyramid (Fig. 7b/8): B_l = mask_fuse(up(F_l, 2^l) + F_0) on the finest grid, then
                           swap_align2nat(mask_pred_S(B_l), lambda = 2^l),
where F_l = mask_subnet(p_l). Parameter names and shapes are the official ones
(``cls_subnet.{0,2,4,6}``, ``cls_score``, ``bbox_subnet.*``, ``bbox_pred``, ``mask_subnet.*``,
``mask_pred_%02d``, ``mask_fuse.0``), so official checkpoints load.

The dense mask windows (every position of every level, as the official code computes them) come
from :meth:`dense_mask_windows`; :meth:`mask_windows` computes the same windows at a few positions
only (see ``sparse_windows``).
"""
import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm

from tensormask_proj.layers import SwapAlign2Nat

from .sparse_windows import sparse_mask_windows
from .up_align2nat import UPSCALE_MODES, UpAlign2Nat, upsample_windows

__all__ = ["TensorMaskHead"]

# Logit read by swap_align2nat outside the map and outside the windows: sigmoid(-6) ~ 0.0025.
PAD_VAL = -6.0


def _tower(in_channels: int, channels: int, num_convs: int, norm: str) -> nn.Sequential:
    # [conv3x3, ReLU] * num_convs: the convs sit at indices 0, 2, 4, ... as in the official
    # state_dict. detectron2's Conv2d keeps the plain conv's parameter names and adds ".norm.*".
    layers = []
    for i in range(num_convs):
        layers.append(
            Conv2d(
                in_channels if i == 0 else channels,
                channels,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, channels) if norm else None,
            )
        )
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TensorMaskHead(nn.Module):
    """Towers and predictors of TensorMask; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        num_convs: int,
        cls_channels: int,
        bbox_channels: int,
        mask_channels: int,
        mask_sizes: List[int],
        mask_on: bool = True,
        box_head_on: bool = True,
        aligned_on: bool = False,
        bipyramid_on: bool = False,
        upscale_factor: float = 1.0,
        upscale_mode: str = "bilinear",
        sparse_windows: bool = True,
        norm: str = "",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: shapes of the L input feature maps, finest first.
            num_classes (int): K.
            num_anchors (int): A (windows per position; one mask predictor per window).
            num_convs (int): conv layers per tower.
            cls_channels, bbox_channels, mask_channels (int): tower widths.
            mask_sizes (list[int]): S_a for every window id a.
            mask_on (bool): build the mask branch.
            box_head_on (bool): build the box branch (False: mask-only TensorMask).
            aligned_on (bool): predict the aligned representation.
            bipyramid_on (bool): tensor bipyramid (requires aligned_on).
            upscale_factor (float): lambda of the upscaling baseline heads (1 = simple head).
            upscale_mode (str): "bilinear" or "nearest" window upsampling.
            sparse_windows (bool): in :meth:`forward`, do not compute dense mask windows (the
                caller then uses :meth:`mask_windows`).
            norm (str): norm of the cls, bbox and mask towers ("" = none, official). The mask
                tower is then always computed on whole maps (a norm's statistics would change on
                crops); the bipyramid's ``mask_fuse`` and the predictors are never normalised.
            prior_prob (float): initial foreground probability of the classifier.
        """
        super().__init__()
        if bipyramid_on and not aligned_on:
            raise ValueError(
                "MODEL.TENSOR_MASK.BIPYRAMID_ON=True requires MODEL.TENSOR_MASK.ALIGNED_ON=True "
                "(the tensor bipyramid is built with swap_align2nat from aligned windows)"
            )
        if upscale_mode not in UPSCALE_MODES:
            raise ValueError(
                f"MODEL.TENSOR_MASK.UPSCALE_MODE must be one of {list(UPSCALE_MODES)}, got "
                f"{upscale_mode!r}"
            )
        if bipyramid_on and upscale_factor != 1.0:
            raise ValueError(
                "MODEL.TENSOR_MASK.UPSCALE_FACTOR != 1 is a feature-pyramid baseline head and "
                "cannot be combined with MODEL.TENSOR_MASK.BIPYRAMID_ON (whose upscaling is "
                "lambda = 2^k per level)"
            )
        if upscale_factor < 1.0:
            raise ValueError(f"MODEL.TENSOR_MASK.UPSCALE_FACTOR must be >= 1, got {upscale_factor}")
        in_channels = {s.channels for s in input_shape}
        if len(in_channels) != 1:
            raise ValueError(f"TensorMask head inputs must have equal channels, got {input_shape}")
        in_channels = in_channels.pop()
        strides = [s.stride for s in input_shape]

        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.mask_on = mask_on
        self.box_head_on = box_head_on
        self.aligned_on = aligned_on
        self.bipyramid_on = bipyramid_on
        self.upscale_mode = upscale_mode
        self.sparse_windows = sparse_windows
        self.num_convs = num_convs
        self.mask_sizes = [int(s) for s in mask_sizes]
        self.pad_val = PAD_VAL
        self.strides = strides

        self.cls_subnet = _tower(in_channels, cls_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(cls_channels, num_anchors * num_classes, 3, padding=1)
        init_modules = [self.cls_subnet, self.cls_score]
        if box_head_on:
            self.bbox_subnet = _tower(in_channels, bbox_channels, num_convs, norm)
            self.bbox_pred = nn.Conv2d(bbox_channels, num_anchors * 4, 3, padding=1)
            init_modules += [self.bbox_subnet, self.bbox_pred]

        if mask_on:
            if len(self.mask_sizes) != num_anchors:
                raise ValueError(
                    f"One mask window size per anchor is needed: {num_anchors} anchors per "
                    f"position but window sizes {self.mask_sizes} (MODEL.ANCHOR_GENERATOR.SIZES)"
                )
            # Side predicted by the 1x1 conv for each window size.
            self.pred_sides = []
            for side in self.mask_sizes:
                pred = side / upscale_factor
                if abs(pred - round(pred)) > 1e-6 or round(pred) < 1:
                    raise ValueError(
                        f"MODEL.TENSOR_MASK.UPSCALE_FACTOR={upscale_factor} does not divide the "
                        f"window side {side} (window sizes {self.mask_sizes}, from "
                        "MODEL.ANCHOR_GENERATOR.SIZES[0] / finest stride)"
                    )
                self.pred_sides.append(int(round(pred)))
            self.mask_subnet = _tower(in_channels, mask_channels, num_convs, norm)
            # Sparse windows may compute the tower on crops only if it has no normalisation.
            self.mask_tower_on_crops = not norm
            init_modules.append(self.mask_subnet)
            for side, pred_side in zip(self.mask_sizes, self.pred_sides):
                conv = nn.Conv2d(mask_channels, pred_side * pred_side, 1)
                self.add_module(f"mask_pred_{side:02d}", conv)
                init_modules.append(conv)
            if bipyramid_on:
                # lambda_l: ratio of level l's stride to the finest one (2^l for P2..P7).
                self.lambdas = []
                for level, stride in enumerate(strides):
                    if stride % strides[0] != 0:
                        raise ValueError(
                            "The tensor bipyramid needs every level's stride to be a multiple of "
                            f"the finest one, got strides {strides} "
                            "(MODEL.TENSOR_MASK.IN_FEATURES)"
                        )
                    lam = stride // strides[0]
                    self.lambdas.append(lam)
                    self.add_module(f"align2nat_{level:02d}", SwapAlign2Nat(lam, PAD_VAL))
                self.mask_fuse = nn.Sequential(
                    nn.Conv2d(mask_channels, mask_channels, 3, padding=1), nn.ReLU()
                )
                init_modules.append(self.mask_fuse)
            elif aligned_on:
                if upscale_factor == 1.0:
                    self.align2nat = SwapAlign2Nat(1, PAD_VAL)
                else:
                    for side in self.mask_sizes:
                        self.add_module(
                            f"up_align2nat_{side:02d}", UpAlign2Nat(side, upscale_mode, PAD_VAL)
                        )

        for modules in init_modules:
            for layer in modules.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, mean=0, std=0.01)
                    if layer.bias is not None:
                        nn.init.constant_(layer.bias, 0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        tm = cfg.MODEL.TENSOR_MASK
        sizes0 = cfg.MODEL.ANCHOR_GENERATOR.SIZES[0]
        stride0 = input_shape[0].stride
        return {
            "input_shape": input_shape,
            "num_classes": tm.NUM_CLASSES,
            "num_anchors": len(sizes0),
            "num_convs": tm.NUM_CONVS,
            "cls_channels": tm.CLS_CHANNELS,
            "bbox_channels": tm.BBOX_CHANNELS,
            "mask_channels": tm.MASK_CHANNELS,
            # Official: the window side is the finest level's window size in stride units.
            "mask_sizes": [int(size) // stride0 for size in sizes0],
            "mask_on": cfg.MODEL.MASK_ON,
            "box_head_on": tm.BOX_HEAD_ON,
            "aligned_on": tm.ALIGNED_ON,
            "bipyramid_on": tm.BIPYRAMID_ON,
            "upscale_factor": tm.UPSCALE_FACTOR,
            "upscale_mode": tm.UPSCALE_MODE,
            "sparse_windows": tm.SPARSE_WINDOWS,
            "norm": tm.HEAD_NORM,
        }

    # ---------------------------------------------------------------------------------------- #
    def window_side(self, level: int, anchor_id: int) -> int:
        """S_out: side of the natural windows of (level, window id)."""
        side = self.mask_sizes[anchor_id]
        return side * self.lambdas[level] if self.bipyramid_on else side

    def mask_predictor(self, anchor_id: int) -> nn.Module:
        """The 1x1 conv ``mask_pred_%02d`` of window id a."""
        return getattr(self, f"mask_pred_{self.mask_sizes[anchor_id]:02d}")

    def forward(self, features: List[torch.Tensor]):
        """
        Args:
            features (list[Tensor[N, C, H_l, W_l]]): the L input maps.

        Returns:
            pred_logits (list[Tensor[N, A*K, H_l, W_l]]): class logits (channel a*K + k).
            pred_deltas (list[Tensor[N, A*4, H_l, W_l]] or None): box deltas (None without box
                head).
            pred_masks (list[list[Tensor[N, S_out^2, H_l, W_l]]] or None): dense natural window
                logits per level and window id (channel v*S_out + u); None without mask branch
                or with ``sparse_windows``.
        """
        pred_logits = [self.cls_score(self.cls_subnet(x)) for x in features]
        pred_deltas = None
        if self.box_head_on:
            pred_deltas = [self.bbox_pred(self.bbox_subnet(x)) for x in features]
        pred_masks = None
        if self.mask_on and not self.sparse_windows:
            pred_masks = self.dense_mask_windows(features)
        return pred_logits, pred_deltas, pred_masks

    def dense_mask_windows(self, features: List[torch.Tensor]) -> List[List[torch.Tensor]]:
        """
        Natural mask windows at every position of every level (the official computation).

        Returns:
            list[list[Tensor[N, S_out^2, H_l, W_l]]]: indexed [level][window id].
        """
        towers = [self.mask_subnet(x) for x in features]
        if self.bipyramid_on:
            return self._dense_bipyramid(towers)
        out = []
        for tower in towers:
            per_anchor = []
            for a, side in enumerate(self.mask_sizes):
                pred = self.mask_predictor(a)(tower)
                if self.aligned_on:
                    if self.pred_sides[a] == side:
                        pred = self.align2nat(pred)
                    else:
                        pred = getattr(self, f"up_align2nat_{side:02d}")(pred)
                else:
                    pred = upsample_windows(pred, side, self.upscale_mode)
                per_anchor.append(pred)
            out.append(per_anchor)
        return out

    def _dense_bipyramid(self, towers: List[torch.Tensor]) -> List[List[torch.Tensor]]:
        finest = towers[0]
        height, width = finest.shape[-2:]
        out = []
        for level, tower in enumerate(towers):
            fused = self.mask_fuse(self.upsample_to_finest(tower, level, height, width) + finest)
            align2nat = getattr(self, f"align2nat_{level:02d}")
            out.append(
                [align2nat(self.mask_predictor(a)(fused)) for a in range(len(self.mask_sizes))]
            )
        return out

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

    def mask_towers(self, features: List[torch.Tensor]) -> List[List[torch.Tensor]]:
        """
        The mask tower F_l = mask_subnet(p_l) of every level, split per image.

        Returns:
            list[list[Tensor[1, C, H_l, W_l]]]: indexed [level][image].
        """
        return [[t[None] for t in self.mask_subnet(x).unbind(0)] for x in features]

    def mask_windows(
        self,
        features: List[torch.Tensor],
        level: int,
        image_ids: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        anchor_ids: torch.Tensor,
        towers: Optional[List[List[torch.Tensor]]] = None,
        union_only: bool = False,
    ) -> List[Optional[torch.Tensor]]:
        """
        Natural mask windows of level ``level`` at a few positions, equal to the corresponding
        entries of :meth:`dense_mask_windows` but computed only from the crops they depend on.

        Args:
            features (list[Tensor[N, C, H_l, W_l]]): the head's input maps.
            level (int): l.
            image_ids, ys, xs, anchor_ids (Tensor[n], int64): requested (image, row, column,
                window id) on level l's grid.
            towers: the output of :meth:`mask_towers`, to crop the mask tower from instead of
                computing it on crops of ``features`` (faster when many windows are requested;
                required when ``mask_tower_on_crops`` is False).
            union_only (bool): evaluate all requests of an image on one region (see
                ``sparse_windows``).

        Returns:
            list over window ids a of Tensor[n_a, S_out, S_out] (the requests with
            ``anchor_ids == a``, in request order), or None when no request has window id a.
        """
        return sparse_mask_windows(
            self, features, level, image_ids, ys, xs, anchor_ids, towers, union_only
        )
