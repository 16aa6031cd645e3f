"""
Data of tensormask_proj. Importing it registers the embedded "shapes" datasets with detectron2
(registration only: see ``datasets``).
"""
from . import datasets  # noqa: F401  (registration: shapes_train, shapes_val)
from .datasets import prepare_dataset  # noqa: F401
from .dataset_mapper import BlendMaskDatasetMapper  # noqa: F401
