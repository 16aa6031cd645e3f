"""
The TensorMask head: classification and box branches shared across the pyramid levels, and the
mask branch (paper §4.1, Fig. 6-8; official ``TensorMaskHead``).

Shape shorthand / naming:
    N: images, L: levels (finest first), H_l, W_l: grid of level l, A: windows per position,
    K: classes.

:class:`TensorMaskHead` holds the cls and box towers and predictors, which its :meth:`forward`
runs on every level, and the mask branch (:class:`~.mask_heads.MaskBranch`, one class per mask
head variant of the paper), which the meta-architecture calls through its own interface
(``losses`` in training, ``predict`` at inference): mask windows are computed only through it.

Parameter names, shapes and their order are the official ones (``cls_subnet.{0,2,4,6}``,
``cls_score``, ``bbox_subnet.*``, ``bbox_pred``, then the mask branch's ``mask_subnet.*``,
``mask_pred_%02d``, ``mask_fuse.0``), so official checkpoints load. :func:`build_tensormask_head`
builds the head and its mask branch from a config.
"""

import math
from typing import List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .mask_heads import MaskBranch, build_mask_branch
from .tower import conv_tower

__all__ = ["TensorMaskHead", "build_tensormask_head"]


class TensorMaskHead(nn.Module):
    """Towers and predictors of the cls and box branches, and the mask branch; see the module
    docstring."""

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
        box_head_on: bool = True,
        mask_branch: Optional[MaskBranch] = None,
        norm: str = "",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: shapes of the L input feature maps, finest first.
            num_classes (int): K.
            num_anchors (int): A (windows per position).
            num_convs (int): conv layers per tower.
            cls_channels, bbox_channels (int): tower widths.
            box_head_on (bool): build the box branch (False: mask-only TensorMask).
            mask_branch (MaskBranch or None): the mask branch, one window size per window id;
                None: no masks (MODEL.MASK_ON False).
            norm (str): norm of the cls and bbox towers ("" = none, official).
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

        self.cls_subnet = conv_tower(in_channels, cls_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(cls_channels, num_anchors * num_classes, 3, padding=1)
        init_modules = [self.cls_subnet, self.cls_score]
        if box_head_on:
            self.bbox_subnet = conv_tower(in_channels, bbox_channels, num_convs, norm)
            self.bbox_pred = nn.Conv2d(bbox_channels, num_anchors * 4, 3, padding=1)
            init_modules += [self.bbox_subnet, self.bbox_pred]

        # Kept outside the module tree: its modules are registered on the head itself, under the
        # official names (``head.mask_subnet.*``, not ``head.mask_branch.mask_subnet.*``) and
        # after the box branch's (the official state_dict order), so that official checkpoints
        # load; registering the branch too would list each of its parameters twice.
        self.__dict__["mask_branch"] = mask_branch
        if mask_branch is not None:
            if mask_branch.num_anchors != num_anchors:
                raise ValueError(
                    f"One mask window size per anchor is needed: {num_anchors} anchors per "
                    f"position but window sizes {mask_branch.mask_sizes} "
                    "(MODEL.ANCHOR_GENERATOR.SIZES)"
                )
            for name, module in mask_branch.named_children():
                self.add_module(name, module)

        for modules in init_modules:
            for layer in modules.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, mean=0, std=0.01)
                    if layer.bias is not None:
                        nn.init.constant_(layer.bias, 0)
        if mask_branch is not None:
            # After the cls and box branches, as the official head: a given seed gives the
            # official initial weights.
            mask_branch.reset_parameters()
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        tm = cfg.MODEL.TENSOR_MASK
        return {
            "input_shape": input_shape,
            "num_classes": tm.NUM_CLASSES,
            "num_anchors": len(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0]),
            "num_convs": tm.NUM_CONVS,
            "cls_channels": tm.CLS_CHANNELS,
            "bbox_channels": tm.BBOX_CHANNELS,
            "box_head_on": tm.BOX_HEAD_ON,
            "mask_branch": build_mask_branch(cfg, input_shape) if cfg.MODEL.MASK_ON else None,
            "norm": tm.HEAD_NORM,
        }

    @property
    def mask_on(self) -> bool:
        return self.mask_branch is not None

    def forward(self, features: List[torch.Tensor]):
        """
        Args:
            features (list[Tensor[N, C_in, H_l, W_l]]): the L input maps.

        Returns:
            pred_logits (list[Tensor[N, A*K, H_l, W_l]]): class logits (channel a*K + k).
            pred_deltas (list[Tensor[N, A*4, H_l, W_l]] or None): box deltas (None without box
                head).
        """
        pred_logits = [self.cls_score(self.cls_subnet(x)) for x in features]
        pred_deltas = None
        if self.box_head_on:
            pred_deltas = [self.bbox_pred(self.bbox_subnet(x)) for x in features]
        return pred_logits, pred_deltas


def build_tensormask_head(cfg, input_shape: List[ShapeSpec]) -> TensorMaskHead:
    """
    The head of ``cfg``, with the mask branch of its variant (see ``build_mask_branch``) when
    MODEL.MASK_ON. The combinations are validated by ``check_tensormask_config``.
    """
    return TensorMaskHead(cfg, input_shape)
