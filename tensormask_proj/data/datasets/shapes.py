"""
The embedded "shapes" dataset on disk: generating a split atomically and checking it.

Layout under a root directory (``$DETECTRON2_DATASETS``, default ``./datasets``):

    <root>/shapes/<split>/000001.jpg ...              images (BGR content, JPEG quality 95)
    <root>/shapes/annotations/instances_<split>.json  COCO instances json

The json is written last, by an atomic rename, and records the generator version, seed and
image count in its "info": a split is complete iff its json exists and its "info" matches.
An interrupted generation therefore never looks complete and is simply redone on next use; a
split made by an older generator version is regenerated. Damage that generation cannot cause
(a corrupt json, a missing image) is reported with an error naming the file, instead of being
papered over.
"""

import glob
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict

import cv2
from iopath.common.file_io import file_lock
from tqdm import tqdm

from .shape_scene import generate_image
from .shape_style import SCENE_STYLES

__all__ = [
    "GENERATOR_VERSION",
    "ShapesSplit",
    "ShapesPaths",
    "ShapesDatasetError",
    "shapes_paths",
    "check_split",
    "generate_split",
    "prepare_split",
]

logger = logging.getLogger(__name__)

# Bump whenever the generated content changes, so that existing copies get regenerated.
GENERATOR_VERSION = 6
_JPEG_QUALITY = 95


class ShapesDatasetError(RuntimeError):
    """A shapes split on disk is damaged (corrupt json, missing image file)."""


@dataclass(frozen=True)
class ShapesSplit:
    """What one split is: its directory name, image count, seed and scene style (a key of
    ``SCENE_STYLES``); image i depends only on (style, seed, i)."""

    dirname: str
    num_images: int
    seed: int
    style: str = "default"

    def __post_init__(self):
        if self.style not in SCENE_STYLES:
            raise ValueError(
                f"ShapesSplit {self.dirname!r}: unknown style {self.style!r}; "
                f"choose from {sorted(SCENE_STYLES)}"
            )


@dataclass(frozen=True)
class ShapesPaths:
    """Where a split lives: ``image_root`` (directory of images) and ``json_file``."""

    image_root: str
    json_file: str


def shapes_paths(split: ShapesSplit, root: str) -> ShapesPaths:
    """Paths of ``split`` under the datasets root directory ``root``."""
    base = os.path.join(root, "shapes")
    return ShapesPaths(
        image_root=os.path.join(base, split.dirname),
        json_file=os.path.join(base, "annotations", f"instances_{split.dirname}.json"),
    )


def _split_info(split: ShapesSplit) -> Dict:
    return {
        "description": "tensormask_proj synthetic shapes (generated, see tensormask_proj/data)",
        "generator_version": GENERATOR_VERSION,
        "split": split.dirname,
        "seed": split.seed,
        "num_images": split.num_images,
        "style": split.style,
    }


def _regenerate_hint(paths: ShapesPaths) -> str:
    return (
        f"Delete {paths.json_file} to have the split regenerated on next use, or run "
        "`python -m tensormask_proj.data.datasets --force`."
    )


def check_split(split: ShapesSplit, paths: ShapesPaths) -> bool:
    """
    Whether ``split`` is complete at ``paths``. False when its json is absent or was made for a
    different generator version, seed or size (it needs (re)generation).

    Raises:
        ShapesDatasetError: the json is not a readable COCO json of this dataset, or one of the
            images it lists is missing; the message names the file.
    """
    if not os.path.isfile(paths.json_file):
        return False
    try:
        with open(paths.json_file, "r") as f:
            coco = json.load(f)
        info = coco["info"]
        file_names = [im["file_name"] for im in coco["images"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ShapesDatasetError(
            f"Annotation file {paths.json_file} is corrupt ({type(e).__name__}: {e}). "
            + _regenerate_hint(paths)
        ) from e
    if info != _split_info(split):
        logger.warning(
            f"{paths.json_file} was generated with {info}, expected {_split_info(split)}: "
            "regenerating the split (a process still reading its images would now read the "
            "new ones)."
        )
        return False
    for name in file_names:
        path = os.path.join(paths.image_root, name)
        if not os.path.isfile(path):
            raise ShapesDatasetError(
                f"Image file {path} listed in {paths.json_file} is missing. "
                + _regenerate_hint(paths)
            )
    return True


def _write_image(path: str, image) -> None:
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
        raise OSError(f"Could not write image file {path}")


def generate_split(split: ShapesSplit, paths: ShapesPaths, progress: bool = True) -> None:
    """
    Generate ``split`` into ``paths`` unconditionally, replacing what is there.

    Everything is written into a temporary directory next to the destination and moved into
    place at the end; the json, which marks the split complete, is moved last.
    """
    base = os.path.dirname(paths.image_root)
    os.makedirs(os.path.dirname(paths.json_file), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{split.dirname}-", dir=base)
    try:
        tmp_images = os.path.join(tmp, split.dirname)
        os.makedirs(tmp_images)
        images, annotations = [], []
        for index in tqdm(
            range(split.num_images),
            desc=f"Generating shapes/{split.dirname}",
            unit="img",
            disable=not progress,
        ):
            scene = generate_image(split.seed, index, SCENE_STYLES[split.style])
            image_id = index + 1
            file_name = f"{image_id:06d}.jpg"
            _write_image(os.path.join(tmp_images, file_name), scene.image)
            height, width = scene.image.shape[:2]
            images.append(
                {"id": image_id, "file_name": file_name, "height": height, "width": width}
            )
            for ann in scene.annotations:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
        coco = {
            "info": _split_info(split),
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": i + 1, "name": name, "supercategory": "shape"}
                for i, name in enumerate(SCENE_STYLES[split.style].classes)
            ],
        }
        tmp_json = os.path.join(tmp, os.path.basename(paths.json_file))
        with open(tmp_json, "w") as f:
            json.dump(coco, f, separators=(",", ":"))
        # Commit. First invalidate any previous copy (json first), then move images, then json:
        # a crash anywhere in between leaves no json, i.e. an incomplete split.
        if os.path.exists(paths.json_file):
            os.remove(paths.json_file)
        if os.path.exists(paths.image_root):
            shutil.rmtree(paths.image_root)
        os.replace(tmp_images, paths.image_root)
        os.replace(tmp_json, paths.json_file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_split(
    split: ShapesSplit, root: str, progress: bool = True, force: bool = False
) -> ShapesPaths:
    """
    Make sure ``split`` is complete under ``root`` (generating it if needed, or always when
    ``force``) and return its paths. Idempotent and safe to call from concurrent processes: a
    file lock makes one generate while the others wait and then find it complete.
    """
    paths = shapes_paths(split, root)
    if not force and check_split(split, paths):
        return paths
    with file_lock(paths.json_file):
        if force or not check_split(split, paths):
            # Left-overs of generations that were killed before they could clean up.
            base = os.path.dirname(paths.image_root)
            for stale in glob.glob(os.path.join(base, f".tmp-{split.dirname}-*")):
                shutil.rmtree(stale, ignore_errors=True)
            logger.info(f"Generating {split.num_images} images of shapes/{split.dirname} in {base}")
            generate_split(split, paths, progress=progress)
    return paths
