"""
Backbones of this project.

The imports below also register ``build_fcos_resnet_fpn_backbone`` and
``build_retinanet_resnet_fpn_p6_backbone`` in detectron2's ``BACKBONE_REGISTRY`` (registration
side effect).
"""

from .fcos_fpn import build_fcos_resnet_fpn_backbone
from .retinanet_fpn import build_retinanet_resnet_fpn_p6_backbone
from .top_block import LastLevelP6

__all__ = [
    "LastLevelP6",
    "build_fcos_resnet_fpn_backbone",
    "build_retinanet_resnet_fpn_p6_backbone",
]
