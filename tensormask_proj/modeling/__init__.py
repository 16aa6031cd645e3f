# Registration: importing the subpackages registers their meta-architectures, proposal
# generators and backbones with detectron2's registries.
from . import (
    backbone,  # noqa: F401
    blendmask,  # noqa: F401
    tensormask,  # noqa: F401
)
