"""
The FCOS head as used by BlendMask (AdelaiDet's layout, so its checkpoints load unchanged).

Shape shorthand in this module:

    N: number of images in the minibatch
    L: number of feature maps per image on which the head is applied (FPN levels)
    Hi, Wi: height and width of the i-th feature map
    C: number of foreground classes
    D: tower width (channels of the FPN features)

detectron2's own :class:`detectron2.modeling.meta_arch.fcos.FCOSHead` (a RetinaNetHead) cannot be
reused here: its parameters are named ``cls_subnet``/``cls_score`` instead of AdelaiDet's
``cls_tower``/``cls_logits``, it has no tower shared by both branches (the "550" and real-time
configs use one), no per-level BatchNorm, and no learnable per-level scale.
"""

import logging
import math
from typing import List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

__all__ = ["FCOSHead", "PerLevelNorm", "NaiveGroupNorm", "Scale"]

logger = logging.getLogger(__name__)


class Scale(nn.Module):
    """A learnable scalar multiplier (FCOS's per-level regression scale)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init_value], dtype=torch.float32))

    def forward(self, x):
        return x * self.scale


class NaiveGroupNorm(nn.GroupNorm):
    """
    GroupNorm written with plain tensor ops (AdelaiDet's "NaiveGN"): same parameters and values as
    :class:`nn.GroupNorm`, but exportable to runtimes without a GroupNorm op.
    """

    def forward(self, x):
        n, c, h, w = x.shape
        g = self.num_groups
        x_g = x.reshape(n, g, -1)
        mean = x_g.mean(dim=-1, keepdim=True)
        var = (x_g - mean).pow(2).mean(dim=-1, keepdim=True)  # biased, like nn.GroupNorm
        x = ((x_g - mean) / (var + self.eps).sqrt()).reshape(n, c, h, w)
        if self.affine:
            x = x * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return x


class PerLevelNorm(nn.ModuleList):
    """
    One BatchNorm per FPN level, chosen by the level index. The head's weights are shared across
    levels but the feature statistics are not (coarse levels have far fewer, larger activations),
    so a single BatchNorm would mix them. State-dict keys are ``<slot>.<level>.*`` as in AdelaiDet.
    """

    def forward(self, x, level: int):
        return self[level](x)


def _make_norm(norm: str, channels: int, num_levels: int):
    if norm in ("", "none"):
        return None
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    if norm == "NaiveGN":
        return NaiveGroupNorm(32, channels)
    if norm == "BN":
        return PerLevelNorm([nn.BatchNorm2d(channels) for _ in range(num_levels)])
    if norm == "SyncBN":
        return PerLevelNorm([nn.SyncBatchNorm(channels) for _ in range(num_levels)])
    raise ValueError(
        f"MODEL.FCOS.NORM must be one of 'GN', 'NaiveGN', 'BN', 'SyncBN', 'none'; got {norm!r}"
    )


class FCOSHead(nn.Module):
    """
    Shared tower -> (classification tower, box tower) -> 3x3 conv predictors, applied to every
    level with the same weights. Centerness is predicted from the *box* tower. The box-tower
    outputs are also returned: BlendMask's top layer (the attention conv) reads them.

    Parameter names: ``{cls,bbox,share}_tower.<i>`` (each tower repeats [conv, norm, ReLU], so the
    convs are at 0, 3, 6, ...), ``cls_logits``, ``bbox_pred``, ``ctrness`` and, with
    ``use_scale``, ``scales.<level>.scale``.
    """

    _version = 2  # version 1 (older AdelaiDet) named the centerness predictor "centerness"

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_levels: int,
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        use_scale: bool = True,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            in_channels: D, channels of every input level (also the tower width).
            num_levels: L, number of input levels (per-level norms and scales).
            num_classes: C.
            num_cls_convs, num_box_convs, num_share_convs: tower depths.
            norm: tower norm, see :func:`_make_norm`.
            use_scale: multiply the regression of each level by a learnable scalar.
            prior_prob: initial foreground probability of the classifier.
        """
        super().__init__()
        self.num_levels = num_levels
        depths = {"cls": num_cls_convs, "bbox": num_box_convs, "share": num_share_convs}
        # Registration order (cls, bbox, share) fixes the state-dict order of AdelaiDet.
        for name, depth in depths.items():
            layers = []
            for _ in range(depth):
                layers.append(nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1))
                norm_layer = _make_norm(norm, in_channels, num_levels)
                if norm_layer is not None:
                    layers.append(norm_layer)
                layers.append(nn.ReLU())
            self.add_module(f"{name}_tower", nn.Sequential(*layers))
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, stride=1, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, stride=1, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, stride=1, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)]) if use_scale else None

        for module in [self.cls_tower, self.bbox_tower, self.share_tower]:
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.constant_(layer.bias, 0)
        for layer in [self.cls_logits, self.bbox_pred, self.ctrness]:
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)
        # Start with every location predicting background with probability 1 - prior_prob, so
        # the many easy negatives do not swamp the focal loss in the first iterations.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(
                f"FCOSHead needs the same number of channels on every level of "
                f"MODEL.FCOS.IN_FEATURES, got {[s.channels for s in input_shape]}"
            )
        if cfg.MODEL.FCOS.USE_DEFORMABLE:
            raise NotImplementedError(
                "MODEL.FCOS.USE_DEFORMABLE=True (deformable tower convs) is not supported"
            )
        return {
            "in_channels": channels.pop(),
            "num_levels": len(input_shape),
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            # Tower parameters
            "num_cls_convs": cfg.MODEL.FCOS.NUM_CLS_CONVS,
            "num_box_convs": cfg.MODEL.FCOS.NUM_BOX_CONVS,
            "num_share_convs": cfg.MODEL.FCOS.NUM_SHARE_CONVS,
            "norm": cfg.MODEL.FCOS.NORM,
            # Predictor parameters
            "use_scale": cfg.MODEL.FCOS.USE_SCALE,
            "prior_prob": cfg.MODEL.FCOS.PRIOR_PROB,
        }

    @staticmethod
    def _run_tower(tower: nn.Sequential, x, level: int):
        for layer in tower:
            x = layer(x, level) if isinstance(layer, PerLevelNorm) else layer(x)
        return x

    def forward(self, features: List[torch.Tensor]):
        """
        Args:
            features: L tensors, each (N, D, Hi, Wi).

        Returns:
            pred_logits: L tensors (N, C, Hi, Wi), classification logits.
            pred_deltas: L tensors (N, 4, Hi, Wi), non-negative distances (l, t, r, b) from the
                location to the box sides, in units of the level's stride.
            pred_ctrness: L tensors (N, 1, Hi, Wi), centerness logits.
            box_features: L tensors (N, D, Hi, Wi), the box-tower outputs.
        """
        if len(features) != self.num_levels:
            raise ValueError(f"FCOSHead built for {self.num_levels} levels, got {len(features)}")
        pred_logits, pred_deltas, pred_ctrness, box_features = [], [], [], []
        for level, feature in enumerate(features):
            shared = self._run_tower(self.share_tower, feature, level)
            cls_feature = self._run_tower(self.cls_tower, shared, level)
            box_feature = self._run_tower(self.bbox_tower, shared, level)
            pred_logits.append(self.cls_logits(cls_feature))
            pred_ctrness.append(self.ctrness(box_feature))
            deltas = self.bbox_pred(box_feature)
            if self.scales is not None:
                deltas = self.scales[level](deltas)
            pred_deltas.append(F.relu(deltas))
            box_features.append(box_feature)
        return pred_logits, pred_deltas, pred_ctrness, box_features

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Older AdelaiDet checkpoints (tools/rename_blendmask.py era) call the centerness
        # predictor "centerness"; rename it so they load. Checkpoints without version metadata
        # (plain dicts, .pkl) are treated as old, but only keys that exist are renamed.
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            renamed = []
            for suffix in ("weight", "bias"):
                old, new = prefix + "centerness." + suffix, prefix + "ctrness." + suffix
                if old in state_dict and new not in state_dict:
                    state_dict[new] = state_dict.pop(old)
                    renamed.append(old)
            if renamed:
                logger.warning(
                    f"Renamed old checkpoint keys {renamed} to '{prefix}ctrness.*' "
                    "(AdelaiDet's former name of the centerness predictor)."
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
