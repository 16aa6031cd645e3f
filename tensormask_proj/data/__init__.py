"""
Data of tensormask_proj. Importing it registers the built-in datasets (the embedded "shapes"
and the shipped "microcontroller" photos) with detectron2 (registration only: see ``datasets``).
"""

from . import datasets  # noqa: F401  (registration: shapes_*, microcontroller_train/_val)
from .dataset_mapper import BlendMaskDatasetMapper  # noqa: F401
from .datasets import prepare_dataset  # noqa: F401
