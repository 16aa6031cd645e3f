"""
Checks of a COCO-format instances dataset (json + image folder) before anything trains on it.

detectron2's ``load_coco_json`` trusts the json: a bad annotation surfaces later, mid-training
or at evaluation, as an error that names neither the file nor the annotation (a KeyError on a
category id, a ``SizeMismatchError`` in a loader worker, pycocotools' ``IndexError`` on an empty
segmentation during COCOeval), or not at all (a 16-bit grayscale PNG is clipped to white).
:func:`check_coco_dataset` reads the json and every image header once and sorts each problem
into one of three kinds:

* **errors** (nothing trains; :class:`CocoDatasetError` lists them, each naming the image file,
  image id and annotation id): an image missing on disk, unreadable, of another size than the
  json says (including a JPEG whose EXIF orientation turns it: detectron2 reads images turned),
  or 16-bit grayscale; a ``category_id`` missing from ``categories``; an annotation whose image
  id is not in ``images``; a ``bbox`` that is not 4 finite numbers; a ``segmentation`` of an
  unknown type or an RLE of another size than its image; RLE masks of non-crowd annotations
  when ``mask_format`` is "polygon" (detectron2 cannot make polygons of them: set
  INPUT.MASK_FORMAT bitmask); repeated image or annotation ids; for a model with masks, a
  dataset none of whose annotations has one.
* **skips** (the annotation is left out of training *and* evaluation, counted and logged):
  a zero-area box, a box wholly outside its image, and, for a model with masks, an annotation
  without a usable one (``segmentation`` empty or missing, or no polygon of at least 3
  points). detectron2 itself drops annotations without a valid polygon from training only;
  COCOeval then crashes on them. A model without masks ignores ``segmentation``.
* **fixes** (counted and logged): polygons with fewer than 3 points (or an odd number of
  coordinates) are dropped from an annotation that has valid ones, and boxes partly outside
  their image are clipped to it, as detectron2's mapper clips them in training, so that
  evaluation matches against the same boxes.

Grayscale, palette, RGBA, CMYK and 16-bit RGB images, EXIF-rotated JPEGs whose json size is the
turned size, and images of any size down to 1x1 px are accepted as they are: detectron2's
``read_image`` converts them all to 8-bit RGB correctly.
"""
import json
import math
import os
from collections import Counter
from typing import Dict, List, Optional, Tuple

from PIL import Image

__all__ = ["CocoCheck", "CocoDatasetError", "check_coco_dataset"]

_EXIF_ORIENTATION = 0x0112
# EXIF orientations that swap width and height (90° and 270° turns, with or without a flip).
_TURNS_A_QUARTER = (5, 6, 7, 8)
# Listed in an error message; the count of the rest is given.
_MAX_LISTED = 10

SKIP_REASONS = {
    "zero_area_box": "zero-area box",
    "box_outside_image": "box wholly outside its image",
    "no_valid_mask": "no usable mask (empty segmentation, or no polygon of at least 3 points)",
}
FIX_REASONS = {
    "box_clipped": "box clipped to its image",
    "polygons_dropped": "polygons of fewer than 3 points dropped (the annotation kept others)",
}


class CocoDatasetError(ValueError):
    """The dataset cannot be trained on; the message lists the problems with their ids."""


class CocoCheck:
    """
    The result of :func:`check_coco_dataset`.

    Attributes:
        json_file, image_root: what was checked.
        dataset (dict): the json's content without the skipped annotations and with the fixes
            applied (the input when ``changed`` is False).
        changed (bool): whether anything was skipped or fixed.
        skipped, fixed (Counter): annotation counts per reason (keys of SKIP_REASONS,
            FIX_REASONS).
        examples (dict): per reason, where its first case is ("annotation id 7 of image id 3
            (file a.jpg)").
        thing_classes (list[str]): category names in the order detectron2 gives them
            contiguous ids (sorted category ids).
        registered_json (str or None): set by ``register_coco_dataset``.
    """

    def __init__(self, json_file, image_root, dataset, skipped, fixed, examples):
        self.json_file = json_file
        self.image_root = image_root
        self.dataset = dataset
        self.skipped = skipped
        self.fixed = fixed
        self.examples = examples
        categories = sorted(dataset["categories"], key=lambda c: c["id"])
        self.thing_classes = [c["name"] for c in categories]
        self.registered_json = None

    @property
    def changed(self) -> bool:
        return bool(sum(self.skipped.values()) or sum(self.fixed.values()))

    def summary(self) -> str:
        """One line per reason: count, what, first example; empty when nothing changed."""
        lines = []
        for counts, reasons, verb in (
            (self.skipped, SKIP_REASONS, "skipped"),
            (self.fixed, FIX_REASONS, "fixed"),
        ):
            for key, what in reasons.items():
                if counts[key]:
                    lines.append(
                        f"{verb} {counts[key]} annotation(s): {what}, e.g. {self.examples[key]}"
                    )
        return "\n".join(lines)


def _image_problems(path: str, width, height) -> Optional[str]:
    """Why the image at ``path`` cannot be used with the json's ``width`` x ``height``."""
    if not os.path.isfile(path):
        return "image file missing on disk"
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError...
        return f"image cannot be read ({type(e).__name__}: {e})"
    if mode in ("I", "F") or mode.startswith("I;16"):
        # PIL's conversion to RGB clips such values to 255 instead of scaling them.
        return (
            f"{mode} image (16-bit or float grayscale): detectron2 would clip it to 8 bits, "
            "mostly white; convert it to 8 bits with the scaling that suits the data"
        )
    turned = size[::-1] if orientation in _TURNS_A_QUARTER else size
    if (width, height) == tuple(turned):
        return None
    if (width, height) == tuple(size):
        return (
            f"the json gives the stored size {width}x{height}, but the EXIF orientation "
            f"({orientation}) turns the image to {turned[0]}x{turned[1]} and detectron2 reads "
            "it turned: annotate the turned image and give its size, or save the pixels "
            "turned without the EXIF orientation"
        )
    return f"the json says {width}x{height} but the image is {turned[0]}x{turned[1]}"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_bbox(bbox, width, height) -> Tuple[Optional[str], Optional[str], Optional[list]]:
    """(error, skip reason, clipped XYWH box or None when unchanged)."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox {bbox!r} is not 4 finite numbers [x, y, w, h]", None, None
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None, "zero_area_box", None
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None, "box_outside_image", None
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        return None, None, [x0, y0, x1 - x0, y1 - y0]
    return None, None, None


def _check_segmentation(segm, width, height, mask_format, iscrowd):
    """(error, skip reason, polygons kept or None when unchanged)."""
    if segm is None or (isinstance(segm, (list, dict)) and len(segm) == 0):
        return None, "no_valid_mask", None
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if size != [height, width]:
            error = f"RLE size {size!r} is not the image's [height, width] {[height, width]}"
            return error, None, None
        if isinstance(counts, list):
            runs_valid = all(isinstance(c, int) and c >= 0 for c in counts)
            if not runs_valid or sum(counts) != width * height:
                return "uncompressed RLE counts do not add up to height x width", None, None
        elif not isinstance(counts, str):
            error = f"RLE counts of type {type(counts).__name__} (list or string expected)"
            return error, None, None
        if mask_format == "polygon" and not iscrowd:
            error = (
                "RLE mask, which detectron2 cannot turn into polygons: set "
                "INPUT.MASK_FORMAT bitmask"
            )
            return error, None, None
        return None, None, None
    if not isinstance(segm, list) or not all(isinstance(p, list) for p in segm):
        return f"segmentation of unknown type {type(segm).__name__}", None, None
    if not all(_is_number(v) for p in segm for v in p):
        return "polygon coordinates are not all finite numbers", None, None
    # detectron2's rule (load_coco_json): a polygon needs an even count of at least 6 numbers.
    valid = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
    if not valid:
        return None, "no_valid_mask", None
    return None, None, (valid if len(valid) < len(segm) else None)


def check_coco_dataset(
    json_file: str, image_root: str, mask_format: Optional[str] = None
) -> CocoCheck:
    """
    Check a COCO instances json and its images (see the module docstring).

    Args:
        json_file: path of the instances json.
        image_root: folder that the images' ``file_name`` are relative to.
        mask_format: the INPUT.MASK_FORMAT of the model that trains or evaluates on the
            dataset ("polygon" or "bitmask"), or None for a model without masks (then
            ``segmentation`` is not looked at).

    Returns:
        CocoCheck.

    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` does not exist.
        CocoDatasetError: listing every error (the first ones in full).
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotations not found: {json_file}")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image folder of {json_file} not found: {image_root}")
    try:
        with open(json_file) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise CocoDatasetError(f"{json_file} is not a readable json file: {e}") from e
    keys = ("images", "annotations", "categories")
    missing = [k for k in keys if not isinstance(raw, dict) or not isinstance(raw.get(k), list)]
    if missing:
        raise CocoDatasetError(
            f"{json_file}: no list {', '.join(missing)} (COCO instances format expected)"
        )

    errors: List[str] = []
    images: Dict = {}
    for img in raw["images"]:
        where = f"image id {img.get('id')} (file {img.get('file_name')})"
        if img.get("id") in images:
            errors.append(f"{where}: image id repeated")
            continue
        images[img.get("id")] = img
        if not isinstance(img.get("file_name"), str) or not all(
            isinstance(img.get(k), int) and img[k] > 0 for k in ("width", "height")
        ):
            errors.append(f"{where}: needs 'file_name' and positive integer 'width', 'height'")
            continue
        path = os.path.join(image_root, img["file_name"])
        problem = _image_problems(path, img["width"], img["height"])
        if problem:
            errors.append(f"image id {img['id']} (file {path}): {problem}")

    category_ids = {c.get("id") for c in raw["categories"]}
    if mask_format is not None and raw["annotations"]:
        if not any(a.get("segmentation") for a in raw["annotations"]):
            raise CocoDatasetError(
                f"{json_file}: none of its {len(raw['annotations'])} annotations has a "
                "'segmentation', but the model predicts masks: add masks, or use a model "
                "without them (MODEL.MASK_ON False, TensorMask only)"
            )
    skipped, fixed, examples = Counter(), Counter(), {}
    kept, seen_ids = [], set()
    for ann in raw["annotations"]:
        img = images.get(ann.get("image_id"))
        file_name = os.path.join(image_root, str(img.get("file_name"))) if img else None
        where = (
            f"annotation id {ann.get('id')} of image id {ann.get('image_id')} (file {file_name})"
        )
        if img is None:
            errors.append(f"{where}: image id not in 'images'")
            continue
        if ann.get("id") in seen_ids:
            errors.append(f"{where}: annotation id repeated")
        seen_ids.add(ann.get("id"))
        if ann.get("category_id") not in category_ids:
            errors.append(
                f"{where}: category_id {ann.get('category_id')!r} is not in 'categories' "
                f"(ids {sorted(category_ids, key=str)})"
            )
        width, height = img.get("width"), img.get("height")
        if not (isinstance(width, int) and isinstance(height, int)):
            continue  # reported with the image
        error, skip, box = _check_bbox(ann.get("bbox"), width, height)
        polygons = None
        if error is None and skip is None and mask_format is not None:
            error, skip, polygons = _check_segmentation(
                ann.get("segmentation"), width, height, mask_format, ann.get("iscrowd", 0)
            )
        if error:
            errors.append(f"{where}: {error}")
            continue
        reasons = [skip] if skip else []
        if box is not None:
            reasons.append("box_clipped")
        if polygons is not None:
            reasons.append("polygons_dropped")
        for reason in reasons:
            (skipped if reason in SKIP_REASONS else fixed)[reason] += 1
            examples.setdefault(reason, where)
        if skip:
            continue
        if box is not None or polygons is not None:
            ann = dict(ann)
            ann["bbox"] = box if box is not None else ann["bbox"]
            ann["segmentation"] = polygons if polygons is not None else ann["segmentation"]
        kept.append(ann)

    if errors:
        listed = "\n  ".join(errors[:_MAX_LISTED])
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise CocoDatasetError(
            f"{json_file}: {len(errors)} problem(s) to fix before training:\n  {listed}{more}"
        )
    dataset = {**raw, "annotations": kept} if (skipped or fixed) else raw
    return CocoCheck(json_file, image_root, dataset, skipped, fixed, examples)
