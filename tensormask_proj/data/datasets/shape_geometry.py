"""
Geometry of the embedded "shapes" dataset: every outline a class can have, as exact polygons.
Which outlines a split uses as its classes is up to its style (``SceneStyle.classes``).

Coordinate convention (the one of COCO and detectron2): x grows to the right, y downwards, and
pixel (i, j) covers the unit square [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5).
Every polygon is an (K, 2) float64 array of (x, y) vertices, K >= 3, with positive shoelace area
in these coordinates (i.e. clockwise as seen on screen). Curved outlines (circle, ring) are fine
polygons whose chords deviate from the true curve by at most ~0.05 px. A ring's hole is joined
to its outer boundary by a zero-width "keyhole" bridge (see shape_annotation), so that it is
still one polygon that the even-odd rule of pycocotools and of shape_raster fills correctly.
"""

from typing import Dict, Tuple

import numpy as np

__all__ = [
    "SHAPE_OUTLINES",
    "SHAPE_COLORS",
    "shape_polygon",
    "polygon_area",
    "check_min_triangle_angle",
]

# Every outline shape_polygon can draw, and its RGB colour for detectron2's Visualizer
# (MetadataCatalog.thing_colors): one distinct colour per outline.
SHAPE_COLORS: Dict[str, Tuple[int, int, int]] = {
    "circle": (230, 25, 75),  # red
    "triangle": (60, 180, 75),  # green
    "square": (0, 130, 200),  # blue
    "star": (255, 225, 25),  # yellow
    "hexagon": (145, 30, 180),  # purple
    "cross": (245, 130, 48),  # orange
    "ring": (70, 240, 240),  # cyan
    "bar": (240, 50, 230),  # magenta
}
SHAPE_OUTLINES: Tuple[str, ...] = tuple(SHAPE_COLORS)

# Largest distance (px) between a circle's chord and its arc; keeps the circle visually round
# at every size while small circles do not carry hundreds of vertices.
_CIRCLE_SAGITTA_PX = 0.05


def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area of an (K, 2) polygon (positive for this module's orientation)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _regular_polygon(num_vertices: int, start_angle: float = 0.0) -> np.ndarray:
    t = start_angle + 2 * np.pi * np.arange(num_vertices) / num_vertices
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _circle(size: float) -> np.ndarray:
    """Unit circle with enough vertices that, drawn ``size`` px wide, no chord strays more than
    _CIRCLE_SAGITTA_PX from the arc."""
    radius = size / 2
    # sagitta = r (1 - cos(pi / n)) ~= r pi^2 / (2 n^2)  =>  n = pi sqrt(r / (2 sagitta))
    n = int(np.ceil(np.pi * np.sqrt(radius / (2 * _CIRCLE_SAGITTA_PX))))
    return _regular_polygon(int(np.clip(n, 24, 256)))


def check_min_triangle_angle(angle: float, name: str) -> None:
    """Raise a ValueError naming ``name`` unless ``angle`` (degrees) is a possible least interior
    angle of a triangle other than the equilateral one: in (0, 60)."""
    if not 0 < angle < 60:
        raise ValueError(f"{name} must be in (0, 60) degrees, got {angle}")


def _unit_shape(
    class_name: str, rng: np.random.Generator, size: float, min_triangle_angle: float
) -> np.ndarray:
    """
    The outline of one instance of ``class_name`` around the origin, before rotation and scaling.
    Within-class variation (star depth, cross arm width, triangle angles, ring hole, bar
    thickness) is drawn from ``rng`` so that a class is a family of shapes rather than one
    template. ``min_triangle_angle`` (degrees) is a triangle's least interior angle.
    """
    if class_name == "circle":
        return _circle(size)
    if class_name == "ring":
        # Hole diameter 45-60% of the outer one: at the smallest object size (24 px) the hole
        # is >= 10 px wide and the band >= 4.8 px, both more than a stride-4 feature cell.
        outer = _circle(size)
        inner = rng.uniform(0.45, 0.6) * outer
        # Keyhole: around the outer boundary back to its first vertex, across to the hole, around
        # the hole the other way (negative area), back across; the closing edge retraces the bridge.
        return np.concatenate([outer, outer[:1], inner[:1], inner[::-1]], axis=0)
    if class_name == "bar":
        # Aspect ratio 2.9-4: the one elongated class, whose box is mostly background when it
        # lies diagonally.
        half_width = rng.uniform(0.25, 0.35)
        return np.array(
            [[-1, -half_width], [1, -half_width], [1, half_width], [-1, half_width]],
            dtype=np.float64,
        )
    if class_name == "triangle":
        # Three points on the circle, redrawn until every interior angle is at least
        # min_triangle_angle, so that no triangle degenerates into a sliver that looks like a
        # line (or, at small sizes, like a bar). An inscribed angle is half the arc opposite it.
        check_min_triangle_angle(min_triangle_angle, "min_triangle_angle")
        least_arc = 2 * np.deg2rad(min_triangle_angle)
        while True:
            t = np.sort(rng.uniform(0, 2 * np.pi, size=3))
            arcs = np.diff(np.concatenate([t, t[:1] + 2 * np.pi]))
            if arcs.min() > least_arc:
                return np.stack([np.cos(t), np.sin(t)], axis=1)
    if class_name == "square":
        return _regular_polygon(4, np.pi / 4)
    if class_name == "star":
        points = 5
        inner = rng.uniform(0.38, 0.55)
        radii = np.tile([1.0, inner], points)
        t = -np.pi / 2 + np.pi * np.arange(2 * points) / points
        return np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
    if class_name == "hexagon":
        return _regular_polygon(6)
    if class_name == "cross":
        a = rng.uniform(0.16, 0.3)  # half arm width, arm half-length is 1
        return np.array(
            [
                [a, -1],
                [a, -a],
                [1, -a],
                [1, a],
                [a, a],
                [a, 1],
                [-a, 1],
                [-a, a],
                [-1, a],
                [-1, -a],
                [-a, -a],
                [-a, -1],
            ],
            dtype=np.float64,
        )
    raise ValueError(f"Unknown shape class {class_name!r}; expected one of {SHAPE_OUTLINES}")


def shape_polygon(
    class_name: str,
    size: float,
    angle: float,
    center: Tuple[float, float],
    rng: np.random.Generator,
    min_triangle_angle: float = 30.0,
) -> np.ndarray:
    """
    An instance of ``class_name`` as an exact polygon in image coordinates.

    Args:
        class_name: one of ``SHAPE_OUTLINES``.
        size: the larger side (px) of the axis-aligned bounding box of the rotated shape; this is
            what "object size" means throughout the dataset (and what FPN level assignment sees).
        angle: rotation in radians.
        center: (x, y) centre of the shape's axis-aligned bounding box.
        rng: source of within-class variation.
        min_triangle_angle: least interior angle (degrees, in (0, 60)) of a triangle; a style
            sets it (``SceneStyle.min_triangle_angle``).

    Returns:
        (K, 2) float64 polygon with positive shoelace area (see module docstring).
    """
    if not size > 0:
        raise ValueError(f"shape size must be > 0, got {size}")
    poly = _unit_shape(class_name, rng, size, min_triangle_angle)
    c, s = np.cos(angle), np.sin(angle)
    poly = poly @ np.array([[c, s], [-s, c]])
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    poly = (poly - (lo + hi) / 2) * (size / float((hi - lo).max()))
    poly = poly + np.asarray(center, dtype=np.float64)
    if polygon_area(poly) < 0:
        poly = poly[::-1].copy()
    return poly
