"""
FCOS locations and per-location training targets, as pure functions of tensors.

Shape shorthand in this module:

    L: number of feature levels
    Hi, Wi: height and width of level i; si its stride
    R: number of locations of one image over all levels (sum of Hi*Wi)
    G: number of ground-truth boxes of one image
    P: number of selected locations (e.g. positives, or detections)

A *location* is the input-image point a feature-map cell looks at:
(x, y) = (j*si + si//2, i*si + si//2) for cell (i, j) of level i, flattened row-major.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.structures import Boxes, pairwise_point_box_distance
from torch import Tensor

__all__ = [
    "INF",
    "compute_locations",
    "locations_to_cells",
    "level_size_ranges",
    "match_locations",
    "compute_ctrness_targets",
]

# Upper bound of the last level's size range ("unbounded"), and the "no match" area sentinel.
INF = 1e8


def compute_locations(features: Sequence[Tensor], strides: Sequence[int]) -> List[Tensor]:
    """
    Args:
        features: L tensors (N, *, Hi, Wi); only their sizes, device and dtype are used.
        strides: L strides si.

    Returns:
        L tensors (Hi*Wi, 2): (x, y) of every cell, row-major (y outer, x inner).
    """
    locations = []
    for feature, stride in zip(features, strides):
        h, w = feature.shape[-2:]
        kwargs = {"dtype": torch.float32, "device": feature.device}
        xs = torch.arange(0, w * stride, step=stride, **kwargs)
        ys = torch.arange(0, h * stride, step=stride, **kwargs)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        locations.append(torch.stack((x.reshape(-1), y.reshape(-1)), dim=1) + stride // 2)
    return locations


def locations_to_cells(locations: Tensor, fpn_levels: Tensor, strides: Sequence[int]):
    """
    The inverse of :func:`compute_locations`: the feature-map cell of each location.

    Args:
        locations: (P, 2) float (x, y), as produced by :func:`compute_locations`.
        fpn_levels: (P,) long level index of each location.
        strides: L strides.

    Returns:
        rows, cols: (P,) long cell indices on each location's level.
    """
    stride = torch.as_tensor(strides, dtype=locations.dtype, device=locations.device)[fpn_levels]
    # Locations are exact integers stored as floats, so the rounding only removes float noise.
    cells = (locations - torch.div(stride, 2, rounding_mode="floor")[:, None]) / stride[:, None]
    cells = cells.round().long()
    return cells[:, 1], cells[:, 0]


def level_size_ranges(sizes_of_interest: Sequence[float]) -> List[Tuple[float, float]]:
    """
    [s1, s2, ..., s(L-1)] -> [(-1, s1), (s1, s2), ..., (s(L-1), INF)]: the range of
    max(l*, t*, r*, b*) each level is responsible for.
    """
    bounds = [-1.0] + [float(s) for s in sizes_of_interest] + [INF]
    return list(zip(bounds[:-1], bounds[1:]))


@torch.no_grad()
def match_locations(
    locations: Tensor,
    strides: Tensor,
    size_ranges: Tensor,
    gt_boxes: Tensor,
    center_sample_radius: Optional[float] = 1.5,
) -> Tuple[Tensor, Tensor]:
    """
    The FCOS assignment rule. A location is a positive of gt box g when

    1. it is strictly inside g, and, with centre sampling, strictly inside the box of half-side
       ``radius * stride`` around g's centre (intersected with g);
    2. the largest of its distances (l*, t*, r*, b*) to g's sides is in its level's size range,
       both ends inclusive;

    and among the gts that pass both tests it takes the one with the smallest box area.

    Args:
        locations: (R, 2) (x, y) of every location of the image, all levels.
        strides: (R,) stride of each location's level.
        size_ranges: (R, 2) (lo, hi) of each location's level.
        gt_boxes: (G, 4) XYXY boxes in input-image pixels.
        center_sample_radius: radius in strides; None disables centre sampling.

    Returns:
        matched_idxs: (R,) long, index into gt_boxes, -1 for background.
        ltrb: (R, 4) distances (l*, t*, r*, b*) in pixels to the matched box's sides
            (to box 0 for background locations; all zero when G = 0).
    """
    num_locations, num_gts = len(locations), len(gt_boxes)
    if num_gts == 0:
        return (
            torch.full((num_locations,), -1, dtype=torch.long, device=locations.device),
            locations.new_zeros((num_locations, 4)),
        )
    boxes = Boxes(gt_boxes)
    ltrb_all = pairwise_point_box_distance(locations, boxes)  # (R, G, 4)
    is_inside = ltrb_all.min(dim=2).values > 0
    if center_sample_radius is not None:
        # Being strictly inside [c - r*s, c + r*s] and strictly inside the gt box is being
        # strictly inside their intersection, AdelaiDet's "sample region".
        radius = strides[:, None] * center_sample_radius  # (R, 1)
        centers = boxes.get_centers()  # (G, 2)
        offsets = (locations[:, None, :] - centers[None, :, :]).abs()  # (R, G, 2)
        is_inside &= offsets.max(dim=2).values < radius
    max_dist = ltrb_all.max(dim=2).values  # (R, G)
    is_cared = (max_dist >= size_ranges[:, :1]) & (max_dist <= size_ranges[:, 1:])

    areas = boxes.area()[None, :].expand(num_locations, num_gts).clone()
    areas[~(is_inside & is_cared)] = INF
    # Smallest area wins; on equal areas the lowest gt index (torch.min returns the first).
    min_area, matched_idxs = areas.min(dim=1)
    matched_idxs[min_area == INF] = -1
    ltrb = ltrb_all[torch.arange(num_locations, device=locations.device), matched_idxs.clamp(min=0)]
    return matched_idxs, ltrb


def compute_ctrness_targets(reg_targets: Tensor) -> Tensor:
    """
    Centerness c* = sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)).

    Args:
        reg_targets: (P, 4) positive distances (l, t, r, b), any unit (the ratio is scale-free).

    Returns:
        (P,) in (0, 1].
    """
    if len(reg_targets) == 0:
        return reg_targets.new_zeros(0)
    left_right = reg_targets[:, [0, 2]]
    top_bottom = reg_targets[:, [1, 3]]
    ctrness = (left_right.min(dim=1).values / left_right.max(dim=1).values) * (
        top_bottom.min(dim=1).values / top_bottom.max(dim=1).values
    )
    return torch.sqrt(ctrness)
