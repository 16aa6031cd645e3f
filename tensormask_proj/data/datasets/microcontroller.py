"""
The "microcontroller" dataset shipped with the package: 149 real phone photos (800x600) of four
kinds of microcontroller boards on cluttered desks, COCO polygons, MIT licence (see
``microcontroller/README.md`` and ``microcontroller/LICENSE`` next to this file).

Registered names (on import of ``tensormask_proj``, see ``builtin``):

    microcontroller_train   119 images, 143 instances   microcontroller/train.json
    microcontroller_val      30 images,  35 instances   microcontroller/val.json

Both read their images from ``microcontroller/images``. The json files keep the export's
category ids, 1 Arduino, 3 ESP8266, 4 Heltec, 5 Raspberry, which are not contiguous:
detectron2's ``load_coco_json`` maps them to the contiguous classes 0..3 for training, and
COCOEvaluator maps its predictions back to 1, 3, 4, 5 through the metadata's
``thing_dataset_id_to_contiguous_id`` (set here at registration, to the same values
``load_coco_json`` derives, so that code reading the metadata before the dataset is loaded,
such as demo.py, sees the classes too).
"""

import os
from typing import Dict, Optional

from detectron2.data.datasets import register_coco_instances

__all__ = [
    "MICROCONTROLLER_ROOT",
    "MICROCONTROLLER_SPLITS",
    "MICROCONTROLLER_CATEGORIES",
    "get_microcontroller_metadata",
    "microcontroller_files",
    "register_microcontroller",
    "register_all_microcontroller",
]

# The data directory inside the package (package data: shipped by setup.py).
MICROCONTROLLER_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "microcontroller")

# Registered name -> json file (relative to the data directory). Both splits share images/.
MICROCONTROLLER_SPLITS: Dict[str, str] = {
    "microcontroller_train": "train.json",
    "microcontroller_val": "val.json",
}

# (json category id, name, colour RGB) in json id order: the order of load_coco_json's classes.
# Ids 0 and 2 are absent (the export's empty placeholder and a class emptied before export).
# Colours: four distinct hues for the visualizer (Arduino's teal, Raspberry Pi's raspberry).
MICROCONTROLLER_CATEGORIES = (
    (1, "Arduino", (0, 151, 157)),
    (3, "ESP8266", (52, 101, 164)),
    (4, "Heltec", (237, 177, 32)),
    (5, "Raspberry", (197, 26, 74)),
)


def get_microcontroller_metadata() -> Dict:
    """Classes, colours and json id -> contiguous id (1, 3, 4, 5 -> 0, 1, 2, 3)."""
    return {
        "thing_classes": [name for _, name, _ in MICROCONTROLLER_CATEGORIES],
        "thing_colors": [list(color) for _, _, color in MICROCONTROLLER_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            cat_id: i for i, (cat_id, _, _) in enumerate(MICROCONTROLLER_CATEGORIES)
        },
    }


def microcontroller_files(name: str, root: Optional[str] = None):
    """(json file, image folder) of the split registered as ``name``."""
    if name not in MICROCONTROLLER_SPLITS:
        raise KeyError(
            f"'{name}' is not a microcontroller split; choose from {list(MICROCONTROLLER_SPLITS)}"
        )
    root = MICROCONTROLLER_ROOT if root is None else root
    return os.path.join(root, MICROCONTROLLER_SPLITS[name]), os.path.join(root, "images")


def register_microcontroller(name: str, root: Optional[str] = None) -> None:
    """
    Register the split ``name`` (a key of ``MICROCONTROLLER_SPLITS``) of the data directory
    ``root`` (default: the package's own copy) with detectron2's ``register_coco_instances``.
    """
    json_file, image_root = microcontroller_files(name, root)
    register_coco_instances(name, get_microcontroller_metadata(), json_file, image_root)


def register_all_microcontroller(root: Optional[str] = None) -> None:
    """Register every split of ``MICROCONTROLLER_SPLITS``."""
    for name in MICROCONTROLLER_SPLITS:
        register_microcontroller(name, root)
