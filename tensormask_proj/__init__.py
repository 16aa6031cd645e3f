"""
tensormask_proj: TensorMask and BlendMask instance segmentation as a detectron2 project.

Importing the package registers its models (``META_ARCH_REGISTRY``: "TensorMask", "BlendMask"),
backbones and datasets with detectron2; the imports below marked "registration" exist only
for that side effect.
"""
from .config import add_blendmask_config, add_project_config, add_tensormask_config, get_project_cfg  # noqa
from . import data  # noqa: F401  (registration: embedded datasets)
from . import modeling  # noqa: F401  (registration: meta-architectures, backbones)

__version__ = "0.1.0"
