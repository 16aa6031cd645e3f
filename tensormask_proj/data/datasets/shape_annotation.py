"""
COCO annotations of the VISIBLE part of each object of a rendered "shapes" scene.

Naming convention (that of shape_raster):
    S: supersampling factor of the label map; subpixel (i, j) covers
        [j / S, (j + 1) / S) x [i / S, (i + 1) / S) in image coordinates.
    label map: (H*S, W*S) uint8, 0 = background, k + 1 = object k is the front-most surface.

An object that nothing covers is annotated with its exact polygon. An occluded object is
annotated by tracing its region of the label map: at S = 8 the traced outline is within ~1/8 px
of the exact one (tests measure the agreement with the rendered pixels). Holes (an object lying
on top of a larger one) cannot be a separate COCO polygon, because COCO unions the polygons of an
annotation; they are joined to their outer ring by a zero-width "keyhole" bridge. pycocotools
rasterizes a polygon with the even-odd rule, and a bridge is traversed once in each direction,
so its two crossings cancel and the hole stays empty. Crowd regions are annotated as RLE, the
way COCO stores them.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .shape_geometry import polygon_area

__all__ = [
    "trace_label_polygons",
    "polygons_to_coco",
    "annotation_from_polygons",
    "crowd_annotation",
]

# Douglas-Peucker tolerance (subpixels) when simplifying traced outlines: one subpixel removes
# the staircase of straight edges while keeping the outline within 1/S px of the traced region.
_TRACE_EPSILON = 1.0


def _offset_ring(ring: np.ndarray, distance: float) -> np.ndarray:
    """
    Move every edge of ``ring`` (K, 2) outward (away from the region it bounds: to the right of
    the direction of travel for positive-area rings, which also holds for negative-area holes)
    by ``distance``, with mitred vertices; the miter is capped at 4x ``distance`` for sharp tips.
    """
    edges = np.roll(ring, -1, axis=0) - ring
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    n_in, n_out = np.roll(normals, 1, axis=0), normals  # edges ending / starting at each vertex
    miter = (n_in + n_out) / np.maximum(1.0 + (n_in * n_out).sum(axis=1, keepdims=True), 1e-12)
    length = np.linalg.norm(miter, axis=1, keepdims=True)
    miter = miter * np.minimum(1.0, 4.0 / np.maximum(length, 1e-12))
    return ring + distance * miter


def _join_hole(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join ``hole`` (P, 2) into ``outer`` (M, 2) through the closest vertex pair (keyhole)."""
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return np.concatenate([outer[: i + 1], hole[j:], hole[: j + 1], outer[i:]], axis=0)


def trace_label_polygons(
    label_map: np.ndarray, label: int, window: Tuple[int, int, int, int], supersample: int
) -> List[np.ndarray]:
    """
    Outline of the region ``label_map == label`` as polygons in image coordinates.

    Args:
        label_map: (H*S, W*S) uint8 label map.
        label: the label to trace.
        window: (y0, y1, x0, x1) subpixel window that contains the whole region.
        supersample: S.

    Returns:
        list of (K, 2) float64 polygons, one per connected component, each with its holes
        joined by keyhole bridges; outer rings have positive area, hole rings negative.
    """
    y0, y1, x0, x1 = window
    # Pad by one so that regions touching the window border still get closed outlines.
    mask = np.pad((label_map[y0:y1, x0:x1] == label).astype(np.uint8), 1)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    offset = np.array([x0 - 1 + 0.5, y0 - 1 + 0.5])  # subpixel index -> centre, undo the pad

    def ring(i: int, sign: float) -> Optional[np.ndarray]:
        pts = cv2.approxPolyDP(contours[i], _TRACE_EPSILON, True).reshape(-1, 2)
        if len(pts) < 3:
            return None
        pts = (pts.astype(np.float64) + offset) / supersample
        area = polygon_area(pts)
        if area == 0:
            return None
        pts = pts if area * sign > 0 else pts[::-1].copy()
        # cv2 traces through the centres of the region's boundary subpixels, i.e. half a
        # subpixel inside the edge of the region they cover: move the outline back out.
        return _offset_ring(pts, 0.5 / supersample)

    polygons = []
    for i, (_next, _prev, child, parent) in enumerate(hierarchy):
        if parent != -1:
            continue
        outer = ring(i, +1.0)
        if outer is None:
            continue
        while child != -1:
            hole = ring(child, -1.0)
            if hole is not None:
                outer = _join_hole(outer, hole)
            child = hierarchy[child][0]
        polygons.append(outer)
    return polygons


def polygons_to_coco(polygons: Sequence[np.ndarray]) -> List[List[float]]:
    """(K, 2) arrays -> COCO's flat [x0, y0, x1, y1, ...] lists, rounded to 1/100 px."""
    return [[round(float(v), 2) for v in p.reshape(-1)] for p in polygons]


def annotation_from_polygons(
    segmentation: List[List[float]], category_id: int, height: int, width: int
) -> Optional[Dict]:
    """
    A COCO annotation (without "id"/"image_id") whose area is that of the polygons as
    pycocotools rasterizes them (what COCOeval compares against) and whose bbox is the polygons'
    extent (XYWH, as COCO defines it). Polygons that cover no pixel centre (sub-pixel slivers
    left between occluders) are dropped, so they do not stretch the box. None when nothing is
    left.
    """
    rles = mask_util.frPyObjects(segmentation, height, width) if segmentation else []
    keep = [i for i, r in enumerate(rles) if mask_util.area(r) > 0]
    if not keep:
        return None
    segmentation = [segmentation[i] for i in keep]
    rle = mask_util.merge([rles[i] for i in keep])
    area = float(mask_util.area(rle))
    xy = np.concatenate([np.asarray(p).reshape(-1, 2) for p in segmentation], axis=0)
    lo = np.maximum(xy.min(axis=0), 0.0)
    hi = np.minimum(xy.max(axis=0), [width, height])
    return {
        "category_id": category_id,
        "segmentation": segmentation,
        "area": area,
        "bbox": [round(float(v), 2) for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])],
        "iscrowd": 0,
    }


def crowd_annotation(mask: np.ndarray, category_id: int) -> Optional[Dict]:
    """An iscrowd=1 COCO annotation with compressed-RLE segmentation of the (H, W) bool mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    area = float(mask_util.area(rle))
    if area <= 0:
        return None
    return {
        "category_id": category_id,
        "segmentation": {
            "size": [int(v) for v in rle["size"]],
            "counts": rle["counts"].decode("ascii"),
        },
        "area": area,
        "bbox": [round(float(v), 2) for v in mask_util.toBbox(rle)],
        "iscrowd": 1,
    }
