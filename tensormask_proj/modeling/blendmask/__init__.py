"""
BlendMask (Chen et al., CVPR 2020) on an FCOS detector.

Importing this package registers (registration side effects): the meta-architecture
"BlendMask" (META_ARCH_REGISTRY) and the basis module "ProtoNet" (this package's
BASIS_MODULE_REGISTRY). FCOS is not registered as a proposal generator: BlendMask builds it
(see ``fcos.FCOS``).
"""

from .basis_module import BASIS_MODULE_REGISTRY, ProtoNet, build_basis_module
from .blender import Blender, blend
from .fcos import FCOS
from .fcos_head import FCOSHead
from .meta_arch import BlendMask

__all__ = [
    "BASIS_MODULE_REGISTRY",
    "BlendMask",
    "Blender",
    "FCOS",
    "FCOSHead",
    "ProtoNet",
    "blend",
    "build_basis_module",
]
