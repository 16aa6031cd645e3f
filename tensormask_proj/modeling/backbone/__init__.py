"""
Backbones of this project.

The import below also registers ``build_fcos_resnet_fpn_backbone`` in detectron2's
``BACKBONE_REGISTRY`` (registration side effect).
"""
from .fcos_fpn import LastLevelP6, build_fcos_resnet_fpn_backbone

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone"]
