"""
tensormask_proj: TensorMask and BlendMask instance segmentation as a detectron2 project.

Importing the package registers its models (``META_ARCH_REGISTRY``: "TensorMask", "BlendMask"),
backbones and datasets with detectron2; the imports below marked "registration" exist only
for that side effect.
"""

import warnings

try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover (depends on the environment)
    # detectron2 is not on PyPI under its name, so `pip install` of this package cannot bring it.
    raise ImportError(
        "tensormask_proj needs detectron2 0.6, which is not installed (it is not on PyPI under "
        "its name, so pip could not install it with this package). Install it with "
        "`python tools/install_detectron2.py` from this repository (see docs/install.md)."
    ) from e

# detectron2 0.6 and fvcore call torch.jit.script when their modules are imported
# (fvcore.nn.focal_loss, detectron2.modeling.box_regression), and torch >= 2.10 deprecates it
# with a FutureWarning: every command printed it twice, about code that is neither the user's nor
# this project's, and that nothing here scripts. It is silenced for these imports only, by its
# message and category; a torch.jit.script call made later, by anyone, still warns. (A program
# that imports detectron2 before tensormask_proj has seen it already: the project's scripts
# import tensormask_proj first.)
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )
    import detectron2.modeling  # noqa: F401
    import fvcore.nn  # noqa: F401

    from . import (
        data,  # noqa: F401  (registration: embedded datasets)
        modeling,  # noqa: F401  (registration: meta-architectures, backbones)
    )
    from .config import (  # noqa: F401
        add_blendmask_config,
        add_project_config,
        add_tensormask_config,
        get_project_cfg,
    )

__version__ = "0.1.0"
