"""
TensorMask (Chen et al., "TensorMask: A Foundation for Dense Object Segmentation", ICCV 2019).

Importing this package registers the meta-architecture "TensorMask" in detectron2's
``META_ARCH_REGISTRY`` (registration side effect of ``meta_arch``).
"""
from .anchor_generator import TensorMaskAnchorGenerator
from .assignment import WindowTargets, assign_windows
from .head import TensorMaskHead
from .meta_arch import TensorMask
from .pointwise_align2nat import swap_align2nat_at
from .up_align2nat import UpAlign2Nat, up_align2nat, upsample_windows
from .variants import check_tensormask_config

__all__ = [
    "TensorMask",
    "TensorMaskHead",
    "TensorMaskAnchorGenerator",
    "WindowTargets",
    "assign_windows",
    "check_tensormask_config",
    "swap_align2nat_at",
    "UpAlign2Nat",
    "up_align2nat",
    "upsample_windows",
]
