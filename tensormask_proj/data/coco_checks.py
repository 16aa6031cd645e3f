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
  id is not in ``images``; an image, annotation or category id that is not an integer or a
  string (a list, say); a category id given to several categories; a ``bbox`` that is not 4
  finite numbers; a ``segmentation`` of an unknown type or an RLE of another size than its
  image; RLE masks of non-crowd annotations when ``mask_format`` is "polygon" (detectron2
  cannot make polygons of them: set INPUT.MASK_FORMAT bitmask); repeated image or annotation
  ids; for a model with masks, a dataset none of whose annotations has one; a dataset none of
  whose annotations is left to train on, all skipped or crowd regions (detectron2 would stop
  with a bare "No valid data found").
* **skips** (the annotation is left out of training *and* evaluation, counted and logged):
  a zero-area box, a box wholly outside its image, a box of negative width or height (unless
  its polygons give the box, see the fixes), and, for a model with masks, an annotation
  without a usable one (``segmentation`` empty or missing, or no polygon of at least 3
  points), or whose every polygon is degenerate (zero area, or wholly outside the image).
  detectron2 itself drops annotations without a valid polygon from training only; COCOeval
  then crashes on them. A model without masks ignores ``segmentation``.
* **fixes** (counted and logged): polygons with fewer than 3 points (or an odd number of
  coordinates), and degenerate polygons, are dropped from an annotation that has valid ones;
  polygons reaching further than one image size outside their image are clipped to that
  margin (before any rasterisation: pycocotools' memory grows with the coordinates; the part
  inside the image is unchanged); a box of negative width or height is replaced by the
  bounding box of its annotation's polygons; boxes partly outside their image are clipped to
  it, as detectron2's mapper clips them in training, so that evaluation matches against the
  same boxes.

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
    "negative_box": "box of negative width or height (and no polygon to take the box from)",
    "box_outside_image": "box wholly outside its image",
    "no_valid_mask": "no usable mask (empty segmentation, or no polygon of at least 3 points)",
    "degenerate_mask": (
        "every polygon degenerate (zero area: collinear or repeated points; or wholly outside "
        "the image)"
    ),
}
FIX_REASONS = {
    "box_clipped": "box clipped to its image",
    "box_from_polygons": (
        "box of negative width or height replaced by the bounding box of its polygons"
    ),
    "polygons_dropped": "polygons of fewer than 3 points dropped (the annotation kept others)",
    "degenerate_polygons_dropped": (
        "degenerate polygons (zero area, or wholly outside the image) dropped (the annotation "
        "kept others)"
    ),
    "polygons_clipped": (
        "polygons reaching more than one image size outside the image clipped to that margin "
        "(the part inside the image unchanged)"
    ),
}
# A polygon is collinear when the sine of the angle between its point directions stays below
# this: float coordinates of collinear points seldom give an exact 0.
_COLLINEAR_SINE = 1e-9


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
        return _summary(self.skipped, self.fixed, self.examples)


def _summary(skipped: Counter, fixed: Counter, examples: Dict[str, str]) -> str:
    lines = []
    for counts, reasons, verb in (
        (skipped, SKIP_REASONS, "skipped"),
        (fixed, FIX_REASONS, "fixed"),
    ):
        for key, what in reasons.items():
            if counts[key]:
                lines.append(f"{verb} {counts[key]} annotation(s): {what}, e.g. {examples[key]}")
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


def _is_id(x) -> bool:
    """COCO ids are integers; strings work as well (pycocotools and detectron2 only hash, compare
    and sort them). Anything else (a list, a float, null) cannot key pycocotools' indexes."""
    return (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, str)


def _mixed_id_types(ids, what: str) -> List[str]:
    # detectron2 sorts image and category ids: integers and strings do not compare.
    if len({type(i) for i in ids}) > 1:
        return [f"{what} ids mix integers and strings (detectron2 sorts them): use one type"]
    return []


def _category_errors(categories: list) -> Tuple[List[str], set]:
    """
    (errors, the set of valid category ids) of the json's ``categories``.

    detectron2 makes one class per category entry but one contiguous id per distinct category
    id: with an id given twice, the class count it asks for has one name too many and its
    ``thing_classes`` assertion fails, with a message that names neither the json nor the id.
    """
    errors, ids = [], []
    for category in categories:
        cid = category.get("id") if isinstance(category, dict) else None
        if _is_id(cid):
            ids.append(cid)
        else:
            errors.append(f"category {category!r}: id {cid!r} is not an integer or a string")
    counts = Counter(ids)
    for cid in sorted((i for i, n in counts.items() if n > 1), key=str):
        names = [c.get("name") for c in categories if isinstance(c, dict) and c.get("id") == cid]
        errors.append(
            f"category id {cid!r} is given to {counts[cid]} categories ({names}): "
            f"{len(ids)} categories but {len(counts)} distinct ids (classes); give each "
            "category its own id"
        )
    return errors + _mixed_id_types(ids, "category"), set(ids)


def _check_bbox(bbox, width, height) -> Tuple[Optional[str], Optional[str], Optional[list]]:
    """(error, skip reason, clipped XYWH box or None when unchanged)."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox {bbox!r} is not 4 finite numbers [x, y, w, h]", None, None
    x, y, w, h = bbox
    if w < 0 or h < 0:
        # Not a box but a mistake (corners swapped, or XYXY read as XYWH): told apart from a
        # zero-area box so that the log says so; the caller may take the box from the polygons.
        return None, "negative_box", None
    if w == 0 or h == 0:
        return None, "zero_area_box", None
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None, "box_outside_image", None
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        return None, None, [x0, y0, x1 - x0, y1 - y0]
    return None, None, None


def _polygon_outside_image(extent, width, height) -> bool:
    # Touching the image's border covers no pixel either.
    x0, y0, x1, y1 = extent
    return x1 <= 0 or x0 >= width or y1 <= 0 or y0 >= height


def _polygon_collinear(xs, ys) -> bool:
    """Whether all points lie on one line (or coincide): the polygon has no area and
    pycocotools rasterises it to an empty mask, which trains as such."""
    direction = None
    for x, y in zip(xs[1:], ys[1:]):
        dx, dy = x - xs[0], y - ys[0]
        if dx == 0 and dy == 0:
            continue
        if direction is None:
            direction = (dx, dy)
            continue
        ux, uy = direction
        # |cross product| = |u| |d| sin(angle): the sine, so that the tolerance is scale-free.
        if abs(ux * dy - uy * dx) > _COLLINEAR_SINE * math.hypot(ux, uy) * math.hypot(dx, dy):
            return False
    return True


def _polygon_beyond(extent, width, height) -> bool:
    # The margin: one image size on each side. Polygons a little past the border (common in
    # real annotations) are left alone; far-away coordinates (1e7) make pycocotools' rasteriser
    # allocate memory in proportion to them, and their masks come out empty.
    x0, y0, x1, y1 = extent
    return x0 < -width or x1 > 2 * width or y0 < -height or y1 > 2 * height


def _clip_polygon(points, x_lo, y_lo, x_hi, y_hi) -> List[Tuple[float, float]]:
    """
    Sutherland-Hodgman clipping of the polygon ``points`` ([(x, y)]) to a rectangle. The
    polygon's part inside the rectangle is unchanged; where the polygon leaves the rectangle,
    the result runs along the rectangle's border (so the border must lie outside the image).
    """

    def at_x(x):
        return lambda p, q: (x, p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0]))

    def at_y(y):
        return lambda p, q: (p[0] + (q[0] - p[0]) * (y - p[1]) / (q[1] - p[1]), y)

    for inside, crossing in (
        (lambda p: p[0] >= x_lo, at_x(x_lo)),
        (lambda p: p[0] <= x_hi, at_x(x_hi)),
        (lambda p: p[1] >= y_lo, at_y(y_lo)),
        (lambda p: p[1] <= y_hi, at_y(y_hi)),
    ):
        clipped = []
        for previous, current in zip(points[-1:] + points[:-1], points):
            if inside(current) != inside(previous):
                clipped.append(crossing(previous, current))
            if inside(current):
                clipped.append(current)
        points = clipped
        if not points:
            break
    return points


def _check_polygons(polygons, width, height) -> Tuple[Optional[str], Optional[list], List[str]]:
    """(skip reason, polygons to keep or None when unchanged, fix reasons) of a list of
    polygons whose coordinates are all finite numbers."""
    kept, fixes = [], []
    for polygon in polygons:
        # detectron2's rule (load_coco_json): a polygon needs an even count of at least 6 numbers.
        if len(polygon) % 2 or len(polygon) < 6:
            fixes.append("polygons_dropped")
            continue
        xs, ys = polygon[0::2], polygon[1::2]
        extent = (min(xs), min(ys), max(xs), max(ys))
        # Degenerate polygons rasterise to empty masks: they would train as "no object here".
        if _polygon_outside_image(extent, width, height):
            fixes.append("degenerate_polygons_dropped")
            continue
        if _polygon_beyond(extent, width, height):
            # Clipped before anything rasterises it; the margin keeps the clipped border (and
            # the edges Sutherland-Hodgman adds along it) outside the image.
            points = _clip_polygon(list(zip(xs, ys)), -width, -height, 2 * width, 2 * height)
            polygon = [float(v) for point in points for v in point]
            xs, ys = polygon[0::2], polygon[1::2]
            fixes.append("polygons_clipped")
        if len(xs) < 3 or _polygon_collinear(xs, ys):
            fixes.append("degenerate_polygons_dropped")
            continue
        kept.append(polygon)
    if not kept:
        degenerate = "degenerate_polygons_dropped" in fixes
        return ("degenerate_mask" if degenerate else "no_valid_mask"), None, []
    fixes = sorted(set(fixes), key=list(FIX_REASONS).index)
    return None, (kept if fixes else None), fixes


def _check_segmentation(segm, width, height, mask_format, iscrowd):
    """(error, skip reason, polygons kept or None when unchanged, fix reasons)."""
    if segm is None or (isinstance(segm, (list, dict)) and len(segm) == 0):
        return None, "no_valid_mask", None, []
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if size != [height, width]:
            error = f"RLE size {size!r} is not the image's [height, width] {[height, width]}"
            return error, None, None, []
        if isinstance(counts, list):
            runs_valid = all(isinstance(c, int) and c >= 0 for c in counts)
            if not runs_valid or sum(counts) != width * height:
                return "uncompressed RLE counts do not add up to height x width", None, None, []
        elif not isinstance(counts, str):
            error = f"RLE counts of type {type(counts).__name__} (list or string expected)"
            return error, None, None, []
        if mask_format == "polygon" and not iscrowd:
            error = (
                "RLE mask, which detectron2 cannot turn into polygons: set "
                "INPUT.MASK_FORMAT bitmask"
            )
            return error, None, None, []
        return None, None, None, []
    if not isinstance(segm, list) or not all(isinstance(p, list) for p in segm):
        return f"segmentation of unknown type {type(segm).__name__}", None, None, []
    if not all(_is_number(v) for p in segm for v in p):
        return "polygon coordinates are not all finite numbers", None, None, []
    skip, polygons, fixes = _check_polygons(segm, width, height)
    return None, skip, polygons, fixes


def _box_of_polygons(polygons) -> list:
    xs = [x for p in polygons for x in p[0::2]]
    ys = [y for p in polygons for y in p[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _check_annotation(ann, width, height, mask_format):
    """(error, skip reason, annotation to keep (``ann`` or a fixed copy), fix reasons)."""
    error, skip, box = _check_bbox(ann.get("bbox"), width, height)
    if error or (skip and skip != "negative_box"):
        return error, skip, None, []
    polygons, fixes = None, []
    if mask_format is not None:
        error, mask_skip, polygons, fixes = _check_segmentation(
            ann.get("segmentation"), width, height, mask_format, ann.get("iscrowd", 0)
        )
        if error or mask_skip:
            return error, skip or mask_skip, None, []
    if skip == "negative_box":
        segm = polygons if polygons is not None else ann.get("segmentation")
        if mask_format is None or not isinstance(segm, list):
            return None, "negative_box", None, []  # no polygon (RLE, or masks not looked at)
        # The polygons are what the annotator drew: their bounding box keeps the object.
        derived = _box_of_polygons(segm)
        _, skip, clipped = _check_bbox(derived, width, height)
        if skip:
            return None, skip, None, []
        box = clipped if clipped is not None else derived
        fixes = ["box_from_polygons"] + fixes
    elif box is not None:
        fixes = ["box_clipped"] + fixes
    if box is not None or polygons is not None:
        ann = dict(ann)
        ann["bbox"] = box if box is not None else ann["bbox"]
        ann["segmentation"] = polygons if polygons is not None else ann["segmentation"]
    return None, None, ann, fixes


def _nothing_left(json_file, annotations, kept, skipped, fixed, examples) -> str:
    # detectron2 drops images without (non-crowd) annotations from training, then stops with a
    # bare "AssertionError: No valid data found"; say why instead.
    crowd = len(kept)
    text = (
        f"{json_file}: none of its {len(annotations)} annotations is left to train on "
        f"({sum(skipped.values())} skipped"
    )
    if crowd:
        text += f", {crowd} crowd region(s), which detectron2 does not train on"
    summary = _summary(skipped, fixed, examples)
    return text + ")" + (":\n  " + summary.replace("\n", "\n  ") if summary else "")


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
        CocoDatasetError: listing every error (the first ones in full), or saying that no
            annotation is left to train on.
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

    errors, category_ids = _category_errors(raw["categories"])
    images: Dict = {}
    for img in raw["images"]:
        where = f"image id {img.get('id')!r} (file {img.get('file_name')})"
        if not _is_id(img.get("id")):
            errors.append(f"{where}: image id is not an integer or a string")
            continue
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
    errors += _mixed_id_types(images, "image")

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
        image_id = ann.get("image_id")
        img = images.get(image_id) if _is_id(image_id) else None
        file_name = os.path.join(image_root, str(img.get("file_name"))) if img else None
        where = f"annotation id {ann.get('id')!r} of image id {image_id!r} (file {file_name})"
        # An id that is not a scalar (a list) makes pycocotools fail with "unhashable type".
        bad_ids = [k for k in ("id", "image_id", "category_id") if not _is_id(ann.get(k))]
        if bad_ids:
            listed = ", ".join(f"{k} {ann.get(k)!r}" for k in bad_ids)
            errors.append(f"{where}: {listed} not an integer or a string")
            continue
        if img is None:
            errors.append(f"{where}: image id not in 'images'")
            continue
        if ann["id"] in seen_ids:
            errors.append(f"{where}: annotation id repeated")
        seen_ids.add(ann["id"])
        if ann["category_id"] not in category_ids:
            errors.append(
                f"{where}: category_id {ann['category_id']!r} is not in 'categories' "
                f"(ids {sorted(category_ids, key=str)})"
            )
        width, height = img.get("width"), img.get("height")
        if not (isinstance(width, int) and isinstance(height, int)):
            continue  # reported with the image
        error, skip, checked, fixes = _check_annotation(ann, width, height, mask_format)
        if error:
            errors.append(f"{where}: {error}")
            continue
        for reason in ([skip] if skip else []) + fixes:
            (skipped if reason in SKIP_REASONS else fixed)[reason] += 1
            examples.setdefault(reason, where)
        if not skip:
            kept.append(checked)

    if errors:
        listed = "\n  ".join(errors[:_MAX_LISTED])
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise CocoDatasetError(
            f"{json_file}: {len(errors)} problem(s) to fix before training:\n  {listed}{more}"
        )
    if raw["annotations"] and all(a.get("iscrowd", 0) for a in kept):
        raise CocoDatasetError(
            _nothing_left(json_file, raw["annotations"], kept, skipped, fixed, examples)
        )
    dataset = {**raw, "annotations": kept} if (skipped or fixed) else raw
    return CocoCheck(json_file, image_root, dataset, skipped, fixed, examples)
