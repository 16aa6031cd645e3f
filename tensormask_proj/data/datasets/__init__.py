"""
The built-in instance-segmentation datasets (COCO format): the embedded "shapes" dataset,
generated on first use, and the "microcontroller" photos shipped with the package.

Importing this package registers ``shapes_train``, ``shapes_val``, ``microcontroller_train`` and
``microcontroller_val`` (and the shapes stress splits) with detectron2's
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
from .microcontroller import (  # noqa: F401
    MICROCONTROLLER_CATEGORIES,
    MICROCONTROLLER_ROOT,
    MICROCONTROLLER_SPLITS,
    get_microcontroller_metadata,
    microcontroller_files,
    register_microcontroller,
)
from .shape_geometry import SHAPE_COLORS, SHAPE_OUTLINES  # noqa: F401
from .shape_style import DEFAULT_CLASSES, SCENE_STYLES, STRESS_CLASSES  # noqa: F401
from .shapes import (  # noqa: F401  # noqa: F401
    GENERATOR_VERSION,
    ShapesDatasetError,
    ShapesPaths,
    ShapesSplit,
    prepare_split,
    shapes_paths,
)
