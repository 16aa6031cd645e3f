"""
Label assignment of TensorMask (paper §4.2 "Label assignment"; official ``_assignment_rule``).

Shape shorthand / naming:
    G: ground-truth objects of one image, R: all windows of the image (all levels, see
    ``anchor_generator``), P: positive windows, K: number of classes.

A window m is a *candidate* for a ground-truth box g iff
    1. containment: the window contains the box (m_x0 <= g_x0, m_y0 <= g_y0, m_x1 >= g_x1,
       m_y1 >= g_y1);
    2. scale: (longer side of m) - u_m <= max(scale_thresh * longer side of g, min_anchor_size),
       i.e. the object's longer side is at least 1/scale_thresh of the window's (the window side
       reduced by one unit), with a floor so that objects smaller than the smallest window still
       get one (the paper's fallback);
    3. centrality: ||(centre(g) - centre(m)) / u_m||^2 <= spatial_thresh,
with u_m the unit length of the window (its level's stride). A window that is a candidate for
exactly one box is positive for it. With ``uniqueness_on`` (official default) a window that is a
candidate for several boxes is negative; without it, it is ignored (label -1).

The official code compares every box with every window (several G x R x 4 tensors: ~145k windows
at 800 px). Condition 3 alone limits the candidates of a box on level l to the grid positions
within sqrt(spatial_thresh) strides of its centre, so this implementation only enumerates those
(a (2k+2)^2 block per level, k = ceil(sqrt(spatial_thresh))) and evaluates the same float32
comparisons on them, for all levels in one pass: the result equals the dense rule (tested) with
O(G * L * A) work and a few dozen tensor operations per image.
"""

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from .anchor_generator import TensorMaskAnchorGenerator

__all__ = ["WindowTargets", "PositiveWindows", "assign_windows"]


@dataclass
class WindowTargets:
    """
    Targets of the windows of one image.

    Attributes:
        gt_labels (Tensor[R], int64): class in [0, K) for positives, K for negatives, -1 ignored.
        pos_indices (Tensor[P], int64): indices of the positive windows, increasing.
        pos_gt (Tensor[P], int64): ground-truth index matched to each positive.
    """

    gt_labels: torch.Tensor
    pos_indices: torch.Tensor
    pos_gt: torch.Tensor


@dataclass
class PositiveWindows:
    """
    The positive windows of a batch, as the mask branch's loss reads them (P: positives of all
    images, in image order).

    Attributes:
        image_ids (Tensor[P], int64): image of each positive, non-decreasing.
        gt_index (Tensor[P], int64): matched object, an index into its image's ground truth.
        boxes (Tensor[P, 4]): XYXY window boxes.
        locations (Tensor[P, 4], int64): level, grid row, grid column and window id.
        normalizer (float): divisor of the loss sums, max(1, P).
    """

    image_ids: torch.Tensor
    gt_index: torch.Tensor
    boxes: torch.Tensor
    locations: torch.Tensor
    normalizer: float

    def __len__(self) -> int:
        return self.image_ids.numel()


def _candidates(gt_boxes, strides, sizes, grid_sizes, spatial_thresh):
    """
    The windows of every level near every box centre, all levels at once.

    Returns:
        gt_idx, levels, ys, xs, anchor_ids (Tensor[c] each): (box, level, row, column, window
            id) of the c enumerated pairs inside their level's grid,
        windows (Tensor[c, 4]): their boxes (``TensorMaskAnchorGenerator.windows_at``),
        units (Tensor[c], float32): their unit lengths (level strides).
    """
    device = gt_boxes.device
    num_gt, num_levels, num_anchors = gt_boxes.shape[0], len(strides), len(sizes[0])
    reach = math.ceil(math.sqrt(spatial_thresh))
    steps = torch.arange(-reach, reach + 2, device=device)  # floor(c/s) + steps covers c/s +- reach
    level_info = torch.tensor(
        [[stride, h, w] for stride, (h, w) in zip(strides, grid_sizes)], device=device
    )  # (L, 3) int64
    stride_l = level_info[:, 0]
    centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (G, 2) x, y
    base = torch.floor(centers[:, None, :] / stride_l[None, :, None].float()).long()  # (G, L, 2)
    ys = (base[:, :, 1, None] + steps)[:, :, :, None, None]  # (G, L, D, 1, 1)
    xs = (base[:, :, 0, None] + steps)[:, :, None, :, None]  # (G, L, 1, D, 1)
    anchor_ids = torch.arange(num_anchors, device=device)[None, None, None, None, :]
    levels = torch.arange(num_levels, device=device)[None, :, None, None, None]
    gt_idx = torch.arange(num_gt, device=device)[:, None, None, None, None]
    shape = (num_gt, num_levels, steps.numel(), steps.numel(), num_anchors)
    ys, xs, anchor_ids, levels, gt_idx = (
        t.expand(shape).reshape(-1) for t in (ys, xs, anchor_ids, levels, gt_idx)
    )
    info = level_info[levels]  # (c, 3): stride, H_l, W_l
    inside = (ys >= 0) & (ys < info[:, 1]) & (xs >= 0) & (xs < info[:, 2])
    keep = torch.nonzero(inside).flatten()
    ys, xs, anchor_ids, levels, gt_idx, info = (
        t[keep] for t in (ys, xs, anchor_ids, levels, gt_idx, info)
    )
    windows = TensorMaskAnchorGenerator.windows_at(levels, ys, xs, anchor_ids, strides, sizes)
    return gt_idx, levels, ys, xs, anchor_ids, windows, info[:, 0].to(torch.float32)


def assign_windows(
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    grid_sizes: List[Tuple[int, int]],
    strides: Sequence[int],
    sizes: Sequence[Sequence[float]],
    num_classes: int,
    min_anchor_size: float,
    scale_thresh: float = 2.0,
    spatial_thresh: float = 1.0,
    uniqueness_on: bool = True,
) -> WindowTargets:
    """
    Assign the windows of one image to its ground truth.

    Args:
        gt_boxes (Tensor[G, 4]): XYXY boxes (float32).
        gt_classes (Tensor[G], int64): classes in [0, K).
        grid_sizes: (H_l, W_l) of every level.
        strides: stride s_l (= unit length) of every level.
        sizes: window sides of every level (A per level).
        num_classes (int): K.
        min_anchor_size (float): floor of the scale condition (official: smallest window side
            minus the finest stride, 44 - 4 = 40).
        scale_thresh, spatial_thresh, uniqueness_on: see the module docstring (official values
            are the defaults).

    Returns:
        WindowTargets
    """
    device = gt_boxes.device
    num_anchors = len(sizes[0])
    num_windows = TensorMaskAnchorGenerator.level_offsets(grid_sizes, num_anchors)[-1]
    gt_labels = torch.full((num_windows,), num_classes, dtype=torch.int64, device=device)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if gt_boxes.shape[0] == 0:
        return WindowTargets(gt_labels, empty, empty)

    gt_boxes = gt_boxes.to(torch.float32)
    gt_wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
    upper = torch.clamp(scale_thresh * gt_wh.max(dim=1).values, min=float(min_anchor_size))
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2

    gt_idx, levels, ys, xs, anchor_ids, windows, units = _candidates(
        gt_boxes, strides, sizes, grid_sizes, spatial_thresh
    )
    g = gt_boxes[gt_idx]
    contained = (windows[:, :2] <= g[:, :2]).all(dim=1) & (windows[:, 2:] >= g[:, 2:]).all(dim=1)
    window_side = (windows[:, 2:] - windows[:, :2]).max(dim=1).values
    scale_ok = (window_side - units) <= upper[gt_idx]
    window_centers = (windows[:, :2] + windows[:, 2:]) / 2
    distance = ((gt_centers[gt_idx] - window_centers) / units[:, None]).pow(2).sum(dim=1)
    central = distance <= spatial_thresh
    keep = torch.nonzero(contained & scale_ok & central).flatten()
    cand_gt = gt_idx[keep]
    cand_index = TensorMaskAnchorGenerator.window_indices(
        levels[keep], ys[keep], xs[keep], anchor_ids[keep], grid_sizes, num_anchors
    )
    counts = torch.bincount(cand_index, minlength=num_windows)
    unique = counts[cand_index] == 1
    order = torch.argsort(cand_index[unique])
    pos_indices = cand_index[unique][order]
    pos_gt = cand_gt[unique][order]
    gt_labels[pos_indices] = gt_classes[pos_gt].to(torch.int64)
    if not uniqueness_on:
        gt_labels[counts > 1] = -1
    return WindowTargets(gt_labels, pos_indices, pos_gt)
