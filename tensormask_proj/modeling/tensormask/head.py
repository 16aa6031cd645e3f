"""
The TensorMask head: classification, box and mask branches shared across the pyramid levels
(paper §4.1, Fig. 6-8; official ``TensorMaskHead``).

Shape shorthand / naming:
    N: images, L: levels (finest first), H_l, W_l: grid of level l, A: windows per position,
    K: classes, C: mask tower channels, S_a: window side of window (anchor) id a on the finest
    level (``mask_sizes``), s_a: side predicted by the 1x1 conv, S_out: natural window side on
    level l (S_a, or S_a * 2^l with the bipyramid), n: requested windows.

:class:`TensorMaskHead` holds what every variant shares: the cls and box towers and predictors,
the mask tower ``mask_subnet`` (F_l = mask_subnet(p_l)) and the 1x1 window predictors
``mask_pred_%02d``. Without a mask branch (MODEL.MASK_ON False) it is the head itself; each mask
head variant of the paper is a subclass (``mask_heads.py``) that owns its extra modules and
computes the natural mask windows two ways:

* :meth:`dense_mask_windows`: at every position of every level, as the official code;
* :meth:`mask_windows`: at requested positions of one level only (positives in training,
  detections at inference), through the compiled ``swap_align2nat_at`` op where the variant
  converts aligned windows. Both give the same windows (tested).

Parameter names, shapes and their order are the official ones (``cls_subnet.{0,2,4,6}``,
``cls_score``, ``bbox_subnet.*``, ``bbox_pred``, ``mask_subnet.*``, ``mask_pred_%02d``,
``mask_fuse.0``), so official checkpoints load. :func:`build_tensormask_head` picks the variant.
"""

import math
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn

from .anchor_generator import TensorMaskAnchorGenerator

__all__ = ["TensorMaskHead", "build_tensormask_head"]

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
    """Towers and predictors shared by every TensorMask head; see the module docstring."""

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
        mask_channels: int = 128,
        mask_sizes: Optional[List[int]] = None,
        pred_sides: Optional[List[int]] = None,
        box_head_on: bool = True,
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
            mask_sizes (list[int] or None): S_a for every window id a; None: no mask branch.
            pred_sides (list[int] or None): s_a predicted by each 1x1 conv (default S_a).
            box_head_on (bool): build the box branch (False: mask-only TensorMask).
            sparse_windows (bool): :meth:`forward` does not compute the dense mask windows (the
                caller uses :meth:`mask_windows`).
            norm (str): norm of the cls, bbox and mask towers ("" = none, official); the
                bipyramid's ``mask_fuse`` and the predictors are never normalised.
            prior_prob (float): initial foreground probability of the classifier.
        """
        super().__init__()
        in_channels = {s.channels for s in input_shape}
        if len(in_channels) != 1:
            raise ValueError(f"TensorMask head inputs must have equal channels, got {input_shape}")
        in_channels = in_channels.pop()
        self.strides = [s.stride for s in input_shape]
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.box_head_on = box_head_on
        self.sparse_windows = sparse_windows
        self.mask_sizes = [int(s) for s in mask_sizes] if mask_sizes else []
        self.pred_sides = list(pred_sides) if pred_sides else list(self.mask_sizes)

        self.cls_subnet = _tower(in_channels, cls_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(cls_channels, num_anchors * num_classes, 3, padding=1)
        init_modules = [self.cls_subnet, self.cls_score]
        if box_head_on:
            self.bbox_subnet = _tower(in_channels, bbox_channels, num_convs, norm)
            self.bbox_pred = nn.Conv2d(bbox_channels, num_anchors * 4, 3, padding=1)
            init_modules += [self.bbox_subnet, self.bbox_pred]
        if self.mask_on:
            if len(self.mask_sizes) != num_anchors:
                raise ValueError(
                    f"One mask window size per anchor is needed: {num_anchors} anchors per "
                    f"position but window sizes {self.mask_sizes} (MODEL.ANCHOR_GENERATOR.SIZES)"
                )
            self.mask_subnet = _tower(in_channels, mask_channels, num_convs, norm)
            init_modules.append(self.mask_subnet)
            # Registered under the official names; indexed by window id through this list.
            self.mask_predictors = []
            for side, pred_side in zip(self.mask_sizes, self.pred_sides):
                conv = nn.Conv2d(mask_channels, pred_side * pred_side, 1)
                self.add_module(f"mask_pred_{side:02d}", conv)
                self.mask_predictors.append(conv)
                init_modules.append(conv)
            for name, module in self._variant_modules(mask_channels).items():
                self.add_module(name, module)
                init_modules.append(module)

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
        sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
        mask_sizes = None
        if cfg.MODEL.MASK_ON:
            strides = [s.stride for s in input_shape]
            mask_sizes = TensorMaskAnchorGenerator.window_cells(sizes, strides)
        return {
            "input_shape": input_shape,
            "num_classes": tm.NUM_CLASSES,
            "num_anchors": len(sizes[0]),
            "num_convs": tm.NUM_CONVS,
            "cls_channels": tm.CLS_CHANNELS,
            "bbox_channels": tm.BBOX_CHANNELS,
            "mask_channels": tm.MASK_CHANNELS,
            "mask_sizes": mask_sizes,
            "box_head_on": tm.BOX_HEAD_ON,
            "sparse_windows": tm.SPARSE_WINDOWS,
            "norm": tm.HEAD_NORM,
        }

    def _variant_modules(self, mask_channels: int) -> Dict[str, nn.Module]:
        """Modules a variant adds after the predictors (created and initialised in this order,
        which keeps the official state_dict order and the random initialisation)."""
        return {}

    @property
    def mask_on(self) -> bool:
        return bool(self.mask_sizes)

    # ---------------------------------------------------------------------------------------- #
    def forward(self, features: List[torch.Tensor]):
        """
        Args:
            features (list[Tensor[N, C_in, H_l, W_l]]): the L input maps.

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
            list[list[Tensor[N, S_out^2, H_l, W_l]]]: indexed [level][window id].
        """
        raise NotImplementedError(f"{type(self).__name__} has no mask branch")

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
        raise NotImplementedError(f"{type(self).__name__} has no mask branch")

    def requests_per_window_id(self, anchor_ids: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """Indices of the requests of each window id a (None where there is none)."""
        present = torch.bincount(anchor_ids, minlength=self.num_anchors).tolist()
        return [
            torch.nonzero(anchor_ids == a).flatten() if count else None
            for a, count in enumerate(present)
        ]


def build_tensormask_head(cfg, input_shape: List[ShapeSpec]) -> TensorMaskHead:
    """
    The head of ``cfg``'s variant: no mask branch (MODEL.MASK_ON False), the tensor bipyramid
    (BIPYRAMID_ON), aligned windows (ALIGNED_ON, with up_align2nat when UPSCALE_FACTOR > 1) or
    natural windows (possibly upscaled). The combinations are validated by
    ``check_tensormask_config``.
    """
    from .mask_heads import AlignedMaskHead, BipyramidMaskHead, NaturalMaskHead

    tm = cfg.MODEL.TENSOR_MASK
    if not cfg.MODEL.MASK_ON:
        cls = TensorMaskHead
    elif tm.BIPYRAMID_ON:
        cls = BipyramidMaskHead
    elif tm.ALIGNED_ON:
        cls = AlignedMaskHead
    else:
        cls = NaturalMaskHead
    return cls(cfg, input_shape)
