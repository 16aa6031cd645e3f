"""
ResNet + FPN backbone of FCOS / BlendMask: the extra coarse levels P6 (and P7) are computed from
the FPN output P5, not from the ResNet output C5 as in RetinaNet. How many extra levels are built
is read from ``MODEL.FCOS.TOP_LEVELS`` (AdelaiDet's convention).

Parameter names are detectron2's (``bottom_up.*``, ``fpn_lateral{i}``, ``fpn_output{i}``,
``top_block.p6``, ``top_block.p7``), so AdelaiDet checkpoints load unchanged.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from .top_block import LastLevelP6

__all__ = ["build_fcos_resnet_fpn_backbone"]


def _build_top_block(top_levels: int, channels: int):
    if top_levels == 2:
        return LastLevelP6P7(channels, channels, in_feature="p5")
    if top_levels == 1:
        return LastLevelP6(channels, channels, in_feature="p5")
    if top_levels == 0:
        return None
    raise ValueError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2, got {top_levels!r}")


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet (``MODEL.RESNETS.*``) + FPN (``MODEL.FPN.*``) with ``MODEL.FCOS.TOP_LEVELS`` extra
    levels computed from P5.

    Returns:
        FPN: a detectron2 backbone whose outputs are "p3".."p5" (for FPN.IN_FEATURES
        res3..res5) plus "p6"/"p7" when TOP_LEVELS is 1/2. ``size_divisibility`` is the stride of
        the last FPN input (32 for res5).
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    top_block = _build_top_block(cfg.MODEL.FCOS.TOP_LEVELS, out_channels)
    if top_block is not None and "res5" not in cfg.MODEL.FPN.IN_FEATURES:
        raise ValueError(
            "build_fcos_resnet_fpn_backbone computes P6/P7 from 'p5', so MODEL.FPN.IN_FEATURES "
            f"must contain 'res5' when MODEL.FCOS.TOP_LEVELS > 0; got {cfg.MODEL.FPN.IN_FEATURES}"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
