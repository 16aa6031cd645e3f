"""
One image of the embedded "shapes" dataset: sampling a scene, rendering it, annotating it.

A scene is a background and a list of objects drawn back to front, so later objects occlude
earlier ones; a ``SceneStyle`` (shape_style) sets their ranges. Everything random is decided by
``np.random.default_rng([seed, index])``: image ``index`` of a split depends only on the split's
style, seed and index, never on other images.

Rendering goes through a supersampled label map (see shape_raster for the convention): the
image is composited from each object's visible coverage of every pixel, and the annotations are
derived from the same label map, so the annotated polygons describe exactly what is visible.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .shape_annotation import (
    annotation_from_polygons,
    crowd_annotation,
    polygons_to_coco,
    trace_label_polygons,
)
from .shape_geometry import shape_polygon
from .shape_raster import SUPERSAMPLE, fill_polygons
from .shape_style import SceneStyle
from .shape_textures import (
    FillStyle,
    finish_image,
    make_background,
    mean_color,
    render_fill,
    sample_fill,
)

__all__ = ["SceneObject", "RenderedScene", "sample_scene", "render_scene", "generate_image"]


@dataclass
class SceneObject:
    """
    One annotated thing. ``polygons``: exact outlines, (K, 2) float64 each, in image coordinates;
    a shape has one, a crowd (``iscrowd``) has one per member. ``category``: contiguous class id
    in [0, len(style.classes)) of the scene's style.
    """

    category: int
    polygons: List[np.ndarray]
    fill: FillStyle
    iscrowd: bool = False

    def pixel_window(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(y0, y1, x0, x1) pixel window containing the object, clipped to the image."""
        xy = np.concatenate(self.polygons, axis=0)
        x0, y0 = np.floor(xy.min(axis=0)).astype(int)
        x1, y1 = np.ceil(xy.max(axis=0)).astype(int)
        return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)


@dataclass
class RenderedScene:
    """
    ``image``: (H, W, 3) uint8 BGR. ``objects``: those kept, back to front.
    ``label_map``: (H*S, W*S) uint8, k + 1 where objects[k] is visible.
    ``coverage``: per object, (H, W) float32 visible fraction of every pixel.
    ``annotations``: per object, a COCO annotation dict without "id"/"image_id".
    """

    image: np.ndarray
    objects: List[SceneObject]
    label_map: np.ndarray
    coverage: List[np.ndarray]
    annotations: List[Dict]


def object_mask(obj: SceneObject, height: int, width: int):
    """
    Subpixel mask of the whole object (as if nothing covered it).

    Returns:
        (y0, y1, x0, x1) subpixel window of the object, and its (y1-y0, x1-x0) bool mask.
    """
    y0, y1, x0, x1 = (v * SUPERSAMPLE for v in obj.pixel_window(height, width))
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    fill_polygons(mask, obj.polygons, True, (x0, y0))
    return (y0, y1, x0, x1), mask


def compose_labels(masks: Sequence, height: int, width: int) -> np.ndarray:
    """(H*S, W*S) uint8 label map of ``object_mask`` outputs painted back to front."""
    if len(masks) > 254:
        raise ValueError(f"at most 254 objects per scene fit a uint8 label map, got {len(masks)}")
    label_map = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), dtype=np.uint8)
    for k, ((y0, y1, x0, x1), mask) in enumerate(masks):
        label_map[y0:y1, x0:x1][mask] = k + 1
    return label_map


def remove_hidden_objects(
    objects: List[SceneObject], height: int, width: int, style: SceneStyle
) -> Tuple[List[SceneObject], np.ndarray, np.ndarray]:
    """
    Drop (nearly) fully occluded objects, the least visible first, until every remaining one
    keeps ``style.min_visible_fraction`` of its area and ``style.min_visible_area`` px visible.
    Removing an object only uncovers others, so this ends after at most len(objects) rounds.

    Returns:
        kept objects, their label map, and (len(kept),) bool "nothing covers it" flags.
    """
    objects = list(objects)
    masks = [object_mask(o, height, width) for o in objects]
    full = np.array([int(np.count_nonzero(m)) for _, m in masks], dtype=np.int64)
    while True:
        label_map = compose_labels(masks, height, width)
        visible = np.array(
            [
                int(np.count_nonzero(label_map[y0:y1, x0:x1] == k + 1))
                for k, ((y0, y1, x0, x1), _) in enumerate(masks)
            ],
            dtype=np.int64,
        )
        fraction = visible / np.maximum(full, 1)
        hidden = (fraction < style.min_visible_fraction) | (
            visible < style.min_visible_area * SUPERSAMPLE**2
        )
        if not hidden.any():
            return objects, label_map, visible >= full
        worst = int(np.argmin(np.where(hidden, fraction, np.inf)))
        del objects[worst], masks[worst]
        full = np.delete(full, worst)


def _sample_crowd(
    rng: np.random.Generator, height: int, width: int, style: SceneStyle
) -> Tuple[int, List]:
    """A cluster of 6..15 tiny shapes of one class: too small and dense to annotate one by one."""
    category = int(rng.integers(len(style.classes)))
    extent = rng.uniform(36, 80)
    cx = rng.uniform(extent / 2 + 4, width - extent / 2 - 4)
    cy = rng.uniform(extent / 2 + 4, height - extent / 2 - 4)
    members = []
    for _ in range(int(rng.integers(6, 16))):
        center = (cx + rng.uniform(-0.5, 0.5) * extent, cy + rng.uniform(-0.5, 0.5) * extent)
        size = rng.uniform(4, 8)
        angle = rng.uniform(0, 2 * np.pi)
        members.append(
            shape_polygon(
                style.classes[category], size, angle, center, rng, style.min_triangle_angle
            )
        )
    return category, members


def sample_scene(
    rng: np.random.Generator, height: int, width: int, background: np.ndarray, style: SceneStyle
):
    """
    Random objects for one image, back to front: [style.min_objects, style.max_objects] of
    them (none with style.empty_image_prob), sizes log-uniform in
    [style.min_object_size, style.max_object_size_fraction * min(H, W)], random class, rotation
    and position (fully inside the image), mostly large objects behind small ones (a noisy depth
    order, so small objects are occluded too), fills contrasting with what lies around them.

    Returns:
        list[SceneObject] back to front (before hidden objects are removed).
    """
    # With min_objects 1 (the default and stress styles) this is the draw made before
    # min_objects existed: their images are unchanged.
    num = (
        0
        if rng.random() < style.empty_image_prob
        else int(rng.integers(style.min_objects, style.max_objects + 1))
    )
    max_size = style.max_object_size_fraction * min(height, width)
    shapes = []
    for _ in range(num):
        category = int(rng.integers(len(style.classes)))
        size = math.exp(rng.uniform(math.log(style.min_object_size), math.log(max_size)))
        angle = rng.uniform(0, 2 * np.pi)
        poly = shape_polygon(
            style.classes[category], size, angle, (0.0, 0.0), rng, style.min_triangle_angle
        )
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        offset = (rng.uniform(-lo[0], width - hi[0]), rng.uniform(-lo[1], height - hi[1]))
        depth = math.log(size) + rng.normal(0, 0.7)
        shapes.append((depth, category, [poly + np.asarray(offset)], False, size))
    if rng.random() < style.crowd_prob:
        category, members = _sample_crowd(rng, height, width, style)
        shapes.append((np.inf, category, members, True, 8.0))  # crowds lie at the back
    shapes.sort(key=lambda s: -s[0])

    objects: List[SceneObject] = []
    for _depth, category, polygons, iscrowd, size in shapes:
        obj = SceneObject(category, polygons, fill=None, iscrowd=iscrowd)
        window = obj.pixel_window(height, width)
        # Contrast with the background under the object and with the objects it may cover.
        avoid = [mean_color(background, window)]
        for other in objects:
            a, b = other.pixel_window(height, width), window
            if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                avoid.append(other.fill.color_a)
        obj.fill = sample_fill(rng, np.asarray(avoid), size, style)
        objects.append(obj)
    return objects


def _coverage(label_map: np.ndarray, label: int, window, height: int, width: int) -> np.ndarray:
    """(H, W) float32 fraction of each pixel's subpixels that show ``label``."""
    y0, y1, x0, x1 = window
    s = SUPERSAMPLE
    sub = label_map[y0 * s : y1 * s, x0 * s : x1 * s] == label
    cov = np.zeros((height, width), dtype=np.float32)
    cov[y0:y1, x0:x1] = sub.reshape(y1 - y0, s, x1 - x0, s).sum(axis=(1, 3)) / float(s * s)
    return cov


def _annotate(obj: SceneObject, label_map, label: int, unoccluded: bool, cov, height, width):
    """COCO annotation of the visible part of ``obj`` (None if it covers no pixel centre)."""
    category_id = obj.category + 1  # json ids are 1-based
    if obj.iscrowd:
        return crowd_annotation(cov >= 0.5, category_id)
    if unoccluded:
        polygons = obj.polygons
    else:
        window = tuple(v * SUPERSAMPLE for v in obj.pixel_window(height, width))
        polygons = trace_label_polygons(label_map, label, window, SUPERSAMPLE)
    return annotation_from_polygons(polygons_to_coco(polygons), category_id, height, width)


def render_scene(
    rng: np.random.Generator,
    objects: List[SceneObject],
    height: int,
    width: int,
    background: np.ndarray,
    style: SceneStyle,
) -> RenderedScene:
    """
    Remove hidden objects, annotate the visible part of each remaining one and composite the
    image from the visible coverages. ``background``: (H, W, 3) float32. ``rng`` drives only
    the photometric finish (noise).
    """
    while True:
        objects, label_map, unoccluded = remove_hidden_objects(objects, height, width, style)
        coverage, annotations = [], []
        for k, obj in enumerate(objects):
            cov = _coverage(label_map, k + 1, obj.pixel_window(height, width), height, width)
            coverage.append(cov)
            annotations.append(_annotate(obj, label_map, k + 1, unoccluded[k], cov, height, width))
        # The visibility thresholds make an object whose visible part covers no pixel centre
        # (only sub-pixel slivers) all but impossible; should it happen, it goes like a hidden one.
        if all(a is not None for a in annotations):
            break
        objects = [o for o, a in zip(objects, annotations) if a is not None]

    image = background.astype(np.float32).copy()
    for obj, cov in zip(objects, coverage):
        y0, y1, x0, x1 = obj.pixel_window(height, width)
        # image = (1 - sum_k cov_k) * background + sum_k cov_k * fill_k; coverages are disjoint.
        texture = render_fill(obj.fill, y0, y1, x0, x1)
        image[y0:y1, x0:x1] += cov[y0:y1, x0:x1, None] * (texture - background[y0:y1, x0:x1])
    return RenderedScene(
        image=finish_image(rng, image, style),
        objects=objects,
        label_map=label_map,
        coverage=coverage,
        annotations=annotations,
    )


def generate_image(seed: int, index: int, style: SceneStyle) -> RenderedScene:
    """Image ``index`` of the split with ``seed`` in ``style``: size, background, objects,
    annotations."""
    rng = np.random.default_rng([seed, index])
    height = style.image_height
    width = int(rng.integers(style.image_width_range[0], style.image_width_range[1] + 1))
    background = make_background(rng, height, width, style)
    objects = sample_scene(rng, height, width, background, style)
    return render_scene(rng, objects, height, width, background, style)
