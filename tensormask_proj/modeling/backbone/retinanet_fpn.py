"""
RetinaNet's ResNet + FPN backbone (extra levels computed from the ResNet output C5) with P6 as
its last level, for a TensorMask head whose levels stop at P6 (the quick configs: 192 px images,
where P7 would be a 2x2 map).

detectron2's ``build_retinanet_resnet_fpn_backbone`` always builds P7; a head that does not read
it leaves P7's convolution without gradient, and DistributedDataParallel stops at the second
iteration ("parameters that were not used in producing loss"). The official TensorMask configs
read P2..P7 and keep detectron2's builder.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone

from .top_block import LastLevelP6

__all__ = ["build_retinanet_resnet_fpn_p6_backbone"]


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_fpn_p6_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet (``MODEL.RESNETS.*``) + FPN (``MODEL.FPN.*``) + P6 = conv3x3/stride 2 of "res5".

    Returns:
        FPN: a detectron2 backbone with outputs "p2".."p5" (for FPN.IN_FEATURES res2..res5) and
        "p6"; parameter names as detectron2's RetinaNet backbone, without ``top_block.p7``.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    if "res5" not in bottom_up.output_shape():
        raise ValueError(
            "build_retinanet_resnet_fpn_p6_backbone computes P6 from 'res5': "
            f"MODEL.RESNETS.OUT_FEATURES must contain it; got {cfg.MODEL.RESNETS.OUT_FEATURES}"
        )
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6(bottom_up.output_shape()["res5"].channels, out_channels, "res5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
