"""
Exact subpixel rasterization of the "shapes" scenes.

Naming convention:
    S: ``SUPERSAMPLE``, subpixels per pixel side. Subpixel (i, j) covers
        [j / S, (j + 1) / S) x [i / S, (i + 1) / S) in image coordinates (see shape_geometry).
    label map: (H*S, W*S) uint8, 0 = background, k + 1 = object k is the front-most surface.

A subpixel belongs to a polygon iff its centre is inside (even-odd rule, the one pycocotools
uses), computed exactly from edge/scanline intersections. cv2.fillPoly is not used because it
also fills pixels whose centres are up to half a pixel outside, which would make the rendered
objects ~0.5 subpixel larger than their annotated polygons.
"""

from typing import Sequence, Tuple

import numpy as np

__all__ = ["SUPERSAMPLE", "polygon_mask", "fill_polygons"]

SUPERSAMPLE = 8


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """
    Centre-sampled even-odd rasterization of one polygon.

    Args:
        polygon: (K, 2) float64 (x, y) vertices in grid units: cell (i, j) has centre
            (j + 0.5, i + 0.5). Parts outside the grid are clipped.
        height, width: grid size.

    Returns:
        (height, width) bool mask.
    """
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Edge e crosses the centre lines y = i + 0.5 of rows i in [lo_e, hi_e): half-open, so a
    # vertex shared by two edges is counted once and horizontal edges not at all.
    lo = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, height).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, height).astype(np.int64)
    count = hi - lo
    edge = np.repeat(np.arange(len(polygon)), count)
    rows = lo[edge] + np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    cy = rows + 0.5
    x = x0[edge] + (cy - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    # Each crossing toggles inside/outside for every cell whose centre is at or right of it.
    cols = np.clip(np.ceil(x - 0.5), 0, width).astype(np.int64)
    toggles = np.zeros((height, width + 1), dtype=np.uint8)
    np.add.at(toggles, (rows, cols), 1)
    # uint8 wraps around at 256, which keeps the parity.
    return (np.cumsum(toggles, axis=1, dtype=np.uint8)[:, :width] & 1).astype(bool)


def fill_polygons(
    canvas: np.ndarray, polygons: Sequence[np.ndarray], value: int, origin: Tuple[int, int]
) -> None:
    """
    Set ``canvas`` to ``value`` on the union of ``polygons`` (image coordinates), in place.

    Args:
        canvas: (h, w) subpixel array whose cell (0, 0) is subpixel ``origin`` = (x, y) of the
            full-image subpixel grid.
        polygons: (K, 2) arrays in image coordinates (pixels).
    """
    h, w = canvas.shape
    for p in polygons:
        q = p * SUPERSAMPLE - np.asarray(origin, dtype=np.float64)
        # Rasterize only the polygon's bounding window: cost proportional to the object size.
        x0, y0 = np.maximum(np.floor(q.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(q.max(axis=0)).astype(int), [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        window = canvas[y0:y1, x0:x1]
        window[polygon_mask(q - [x0, y0], y1 - y0, x1 - x0)] = value
