"""
Registration of the project's built-in datasets with detectron2: the embedded "shapes" dataset
and the "microcontroller" photos shipped with the package (``microcontroller``).

Registered names (on import of ``tensormask_proj``); shapes, under ``$DETECTRON2_DATASETS``,
default ``./datasets``:

    shapes_train          400 images, seed 101, style "default"   <root>/shapes/train
    shapes_val            100 images, seed 202, style "default"   <root>/shapes/val
    shapes_stress_train   400 images, seed 101, style "stress"    <root>/shapes/stress_train
    shapes_stress_val     100 images, seed 202, style "stress"    <root>/shapes/stress_val
    shapes_small_train    400 images, seed 101, style "small"     <root>/shapes/small_train
    shapes_small_val      100 images, seed 202, style "small"     <root>/shapes/small_val

(json files: <root>/shapes/annotations/instances_<dir>.json). The default splits are the ones
the quick configs, tests and the main job use; the stress splits are the original, much harder
set; the small splits have the default classes as dense scenes of 8-40 px objects, for
measuring how the models learn small objects (see shape_style).

A split is generated the first time it is used: ``DatasetCatalog.get(name)``, reading
``MetadataCatalog.get(name).json_file`` (which COCOEvaluator does), or ``prepare_dataset(name)``.

microcontroller, in the package (``tensormask_proj/data/datasets/microcontroller/``; real
photos, 4 classes with the non-contiguous json category ids 1, 3, 4, 5):

    microcontroller_train   119 images, 143 instances   microcontroller/train.json
    microcontroller_val      30 images,  35 instances   microcontroller/val.json

Nothing to generate: ``prepare_dataset`` returns their paths.
"""

import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets.coco import load_coco_json

from .microcontroller import (
    MICROCONTROLLER_SPLITS,
    microcontroller_files,
    register_all_microcontroller,
)
from .shape_geometry import SHAPE_COLORS
from .shape_style import SCENE_STYLES
from .shapes import ShapesPaths, ShapesSplit, prepare_split, shapes_paths

__all__ = [
    "SHAPES_SPLITS",
    "get_shapes_metadata",
    "register_shapes",
    "register_all_shapes",
    "unregister_shapes",
    "prepare_dataset",
    "load_shapes_dicts",
]


SHAPES_SPLITS: Dict[str, ShapesSplit] = {
    "shapes_train": ShapesSplit(dirname="train", num_images=400, seed=101),
    "shapes_val": ShapesSplit(dirname="val", num_images=100, seed=202),
    "shapes_stress_train": ShapesSplit("stress_train", num_images=400, seed=101, style="stress"),
    "shapes_stress_val": ShapesSplit("stress_val", num_images=100, seed=202, style="stress"),
    "shapes_small_train": ShapesSplit("small_train", num_images=400, seed=101, style="small"),
    "shapes_small_val": ShapesSplit("small_val", num_images=100, seed=202, style="small"),
}

# name -> (split, root) of every shapes dataset registered in this process.
_REGISTERED: Dict[str, Tuple[ShapesSplit, str]] = {}


class _ShapesMetadata(Metadata):
    """
    Metadata whose ``json_file`` generates the split on first access, so that consumers that
    read the json directly (COCOEvaluator) also get the dataset "on first use".
    """

    @property
    def json_file(self) -> str:
        try:
            return prepare_dataset(self.name).json_file
        except AttributeError as e:
            # An AttributeError escaping a property would be hidden behind Metadata.__getattr__.
            raise RuntimeError(f"Preparing dataset '{self.name}' failed: {e}") from e


def get_shapes_metadata(style: str = "default") -> Dict:
    """Metadata of the shapes splits of ``style`` (a key of ``SCENE_STYLES``): classes, colours,
    json id -> contiguous id."""
    if style not in SCENE_STYLES:
        raise KeyError(f"Unknown shapes style {style!r}; choose from {sorted(SCENE_STYLES)}")
    classes = SCENE_STYLES[style].classes
    return {
        "thing_classes": list(classes),
        "thing_colors": [list(SHAPE_COLORS[c]) for c in classes],
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(classes))},
    }


def prepare_dataset(name: str, progress: bool = True) -> ShapesPaths:
    """
    Generate the registered shapes dataset ``name`` if it is not complete on disk; return its
    paths (``image_root``, ``json_file``). Idempotent; cheap when the split already exists.
    Call it before anything reads the json file directly. The microcontroller splits are
    shipped with the package: their paths are returned, nothing is generated.
    """
    if name in MICROCONTROLLER_SPLITS:
        json_file, image_root = microcontroller_files(name)
        return ShapesPaths(image_root=image_root, json_file=json_file)
    if name not in _REGISTERED:
        raise KeyError(
            f"'{name}' is not a registered shapes dataset; registered: {sorted(_REGISTERED)}"
        )
    split, root = _REGISTERED[name]
    return prepare_split(split, root, progress=progress)


def load_shapes_dicts(name: str) -> List[Dict]:
    """Dataset dicts (detectron2 standard format, polygon masks) of the shapes dataset ``name``,
    generating it first if needed."""
    paths = prepare_dataset(name)
    return load_coco_json(paths.json_file, paths.image_root, name)


def register_shapes(name: str, split: ShapesSplit, root: str) -> None:
    """
    Register one shapes split under ``name`` with DatasetCatalog and MetadataCatalog.

    Args:
        name: dataset name, must not be registered yet.
        split: what to generate (directory name, image count, seed).
        root: datasets root directory; the split lives under ``<root>/shapes/``.
    """
    root = os.path.abspath(os.path.expanduser(root))
    paths = shapes_paths(split, root)
    DatasetCatalog.register(name, lambda: load_shapes_dicts(name))
    MetadataCatalog[name] = _ShapesMetadata(name=name)
    MetadataCatalog.get(name).set(
        image_root=paths.image_root, evaluator_type="coco", **get_shapes_metadata(split.style)
    )
    _REGISTERED[name] = (split, root)


def unregister_shapes(name: str) -> None:
    """Remove ``name`` from DatasetCatalog, MetadataCatalog and the shapes registry."""
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    _REGISTERED.pop(name, None)


def register_all_shapes(root: str) -> None:
    """Register every split of ``SHAPES_SPLITS`` under ``root``."""
    for name, split in SHAPES_SPLITS.items():
        register_shapes(name, split, root)


def default_datasets_root() -> str:
    # Same convention as detectron2's builtin datasets.
    return os.getenv("DETECTRON2_DATASETS", "datasets")


if __name__.endswith(".builtin"):
    # Registration on import, like detectron2.data.datasets.builtin.
    register_all_shapes(default_datasets_root())
    register_all_microcontroller()
