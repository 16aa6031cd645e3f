"""
Register a COCO-format instances dataset (json + image folder) after checking it, as
detectron2's ``register_coco_instances`` does without checks. This is what ``--dataset NAME JSON
IMAGE_DIR`` of ``train_net.py``, ``demo.py`` and ``tools/visualize_data.py`` calls.
"""

import json
import os
from typing import Optional

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

from ..utils import atomic_write
from .coco_checks import CocoCheck, check_coco_dataset

__all__ = ["register_coco_dataset", "describe_registration"]


def _write_json(path: str, content) -> None:
    # Each process of a multi-GPU run registers its datasets and writes the same content;
    # atomic_write gives each writer its own temporary file, so no reader sees half a file.
    with atomic_write(path, "w") as f:
        json.dump(content, f)


def register_coco_dataset(
    name: str,
    json_file: str,
    image_root: str,
    cache_dir: str,
    mask_format: Optional[str] = None,
) -> CocoCheck:
    """
    Check the dataset (:func:`check_coco_dataset`; errors stop here) and register it in
    ``DatasetCatalog``/``MetadataCatalog`` as ``name`` (evaluator_type "coco", thing_classes
    from its categories).

    When annotations were skipped or fixed, the checked json is written to
    ``cache_dir/<name>.json`` and registered instead of ``json_file``, so that training and
    COCOEvaluator see the same annotations. Nothing is logged here (the caller may run before
    its loggers are set up): :func:`describe_registration` says what happened.

    Args:
        name: the name to use in DATASETS.TRAIN / DATASETS.TEST.
        json_file, image_root, mask_format: as :func:`check_coco_dataset`.
        cache_dir: folder for the checked json (created when needed).

    Returns:
        CocoCheck, with ``registered_json`` set to the json registered.
    """
    if name in DatasetCatalog.list():
        raise ValueError(f"--dataset {name}: a dataset named '{name}' is already registered")
    check = check_coco_dataset(json_file, image_root, mask_format)
    check.registered_json = json_file
    if check.changed:
        os.makedirs(cache_dir, exist_ok=True)
        check.registered_json = os.path.join(cache_dir, f"{name}.json")
        _write_json(check.registered_json, check.dataset)
    metadata = {"thing_classes": check.thing_classes}
    register_coco_instances(name, metadata, check.registered_json, image_root)
    return check


def describe_registration(name: str, check: CocoCheck) -> str:
    """What :func:`register_coco_dataset` registered as ``name``, skips and fixes included."""
    images, annotations = len(check.dataset["images"]), len(check.dataset["annotations"])
    text = (
        f"Dataset '{name}': {images} images, {annotations} annotations, "
        f"{len(check.thing_classes)} classes ({check.json_file}, images in {check.image_root})"
    )
    if check.changed:
        text += (
            f"\n{check.summary()}\nTraining and evaluation use the checked copy "
            f"{check.registered_json}"
        )
    return text
