"""
TensorMask (Chen et al., "TensorMask: A Foundation for Dense Object Segmentation", ICCV 2019).

Importing this package registers the meta-architecture "TensorMask" in detectron2's
``META_ARCH_REGISTRY`` (registration side effect of ``meta_arch``).
"""

from .anchor_generator import TensorMaskAnchorGenerator
from .assignment import PositiveWindows, WindowTargets, assign_windows
from .head import TensorMaskHead, build_tensormask_head
from .mask_heads import (
    AlignedMaskHead,
    BipyramidMaskHead,
    MaskBranch,
    NaturalMaskHead,
    build_mask_branch,
)
from .meta_arch import TensorMask
from .up_align2nat import UpAlign2Nat, up_align2nat, upsample_windows
from .variants import check_tensormask_config

__all__ = [
    "TensorMask",
    "TensorMaskHead",
    "MaskBranch",
    "NaturalMaskHead",
    "AlignedMaskHead",
    "BipyramidMaskHead",
    "build_tensormask_head",
    "build_mask_branch",
    "TensorMaskAnchorGenerator",
    "WindowTargets",
    "PositiveWindows",
    "assign_windows",
    "check_tensormask_config",
    "UpAlign2Nat",
    "up_align2nat",
    "upsample_windows",
]
