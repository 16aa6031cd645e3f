"""
The embedded "shapes" instance-segmentation dataset (COCO format), generated on first use.

Importing this package registers ``shapes_train`` and ``shapes_val`` with detectron2's
DatasetCatalog/MetadataCatalog (see ``builtin``). ``prepare_dataset(name)`` generates a split
ahead of time; ``python -m tensormask_proj.data.datasets --help`` does it from a shell.
"""
from .builtin import (  # noqa: F401  (importing builtin registers the datasets)
    SHAPES_SPLITS,
    get_shapes_metadata,
    load_shapes_dicts,
    prepare_dataset,
    register_all_shapes,
    register_shapes,
    unregister_shapes,
)
from .shape_geometry import SHAPE_COLORS, SHAPE_OUTLINES  # noqa: F401
from .shape_style import DEFAULT_CLASSES, SCENE_STYLES, STRESS_CLASSES  # noqa: F401
from .shapes import GENERATOR_VERSION, ShapesDatasetError, ShapesPaths, ShapesSplit  # noqa: F401
from .shapes import prepare_split, shapes_paths  # noqa: F401
