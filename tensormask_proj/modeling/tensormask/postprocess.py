"""
Post-processing of TensorMask's detections: mask boxes, and pasting the natural mask windows into
the image (official ``_postprocess``, spec §8).

Shape shorthand / naming:
    D: detections of one image, S_i: side of detection i's natural window (it varies with the
    level and window id), H, W: output image size.

A detection's mask is the natural window of its sliding window: S_i x S_i cells tiling the
window's (anchor) box, which is generally larger than the object and not the regressed box.
Pasting therefore uses the window box, scaled like the output boxes but not clipped, with
detectron2's ``paste_masks_in_image`` (bilinear, threshold 0.5), one call per window size.
"""

from typing import List, Sequence, Tuple

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.structures import Boxes

__all__ = ["MaskWindows", "mask_window_boxes", "paste_mask_windows"]


class MaskWindows:
    """
    The natural mask windows (logits) of D detections, of possibly different sizes, storable as
    an :class:`Instances` field (it supports ``len``, indexing, ``cat`` and ``to``).
    """

    def __init__(self, windows: Sequence[torch.Tensor]):
        """
        Args:
            windows: D tensors of shape (S_i, S_i).
        """
        self.windows = list(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item) -> "MaskWindows":
        if isinstance(item, int):
            return MaskWindows([self.windows[item]])
        if isinstance(item, slice):
            return MaskWindows(self.windows[item])
        item = torch.as_tensor(item)
        if item.dtype == torch.bool:
            item = item.nonzero().flatten()
        return MaskWindows([self.windows[i] for i in item.tolist()])

    @staticmethod
    def cat(items: List["MaskWindows"]) -> "MaskWindows":
        return MaskWindows([w for m in items for w in m.windows])

    def to(self, *args, **kwargs) -> "MaskWindows":
        return MaskWindows([w.to(*args, **kwargs) for w in self.windows])


def mask_window_boxes(windows: Sequence[torch.Tensor], window_boxes: torch.Tensor) -> torch.Tensor:
    """
    Bounding boxes of the window masks thresholded at probability 0.5 (logit >= 0), in the
    coordinates of the window boxes (paper §A.4 "mask-bb"). A window with an empty mask gets a
    zero-size box at its window centre.

    Args:
        windows: D tensors (S_i, S_i) of logits (rows along y).
        window_boxes (Tensor[D, 4]): XYXY window boxes.

    Returns:
        Tensor[D, 4]
    """
    boxes = window_boxes.new_zeros((len(windows), 4))
    sides = torch.tensor([w.shape[-1] for w in windows], dtype=torch.int64)
    for side in torch.unique(sides).tolist():
        index = torch.nonzero(sides == side).flatten()
        fg = torch.stack([windows[i] for i in index.tolist()]) >= 0  # (n, S, S)
        index = index.to(boxes.device)
        cells = torch.arange(side, device=fg.device)

        def first_last(occupied):  # (n, S) bool -> first and last occupied cell (n,)
            first = torch.where(occupied, cells, side).min(dim=1).values
            last = torch.where(occupied, cells, -1).max(dim=1).values
            return first, last

        row0, row1 = first_last(fg.any(dim=2))
        col0, col1 = first_last(fg.any(dim=1))
        box = window_boxes[index]
        cell = (box[:, 2:] - box[:, :2]) / side  # (n, 2): cell width, height
        lo = torch.stack([col0, row0], dim=1).to(box.dtype)
        hi = torch.stack([col1, row1], dim=1).to(box.dtype) + 1
        result = torch.cat([box[:, :2] + lo * cell, box[:, :2] + hi * cell], dim=1)
        empty = row1 < 0
        center = (box[:, :2] + box[:, 2:]) / 2
        result[empty] = torch.cat([center, center], dim=1)[empty]
        boxes[index] = result
    return boxes


def _windows_inside(boxes: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """
    Which XYXY boxes (Tensor[D, 4]) overlap the image of size (H, W) by a positive area.
    Windows of detections near the border can lie wholly outside it, in the padding to the size
    divisibility (or beyond the left or top edge): detectron2's per-box paste crashes on those
    ("upper bound and lower bound inconsistent with step sign"), and they cover no pixel anyway.
    """
    height, width = image_size
    return (boxes[:, 0] < width) & (boxes[:, 2] > 0) & (boxes[:, 1] < height) & (boxes[:, 3] > 0)


def paste_mask_windows(
    windows: MaskWindows,
    window_boxes: Boxes,
    scale: Tuple[float, float],
    image_size: Tuple[int, int],
    threshold: float = 0.5,
) -> torch.Tensor:
    """
    Paste the windows' probability masks into the image.

    A window box is never clipped (that would stretch the window's cells); the paste keeps the
    part of the window that falls inside the image, as detectron2 does for ROI masks. So a
    window wholly outside the image gives an empty (all-False) mask: its detection keeps its
    box and score, and its mask covers none of the image, which is what the window says.

    Args:
        windows (MaskWindows): D windows of logits.
        window_boxes (Boxes): the D window boxes in the network's input coordinates.
        scale (float, float): (scale_x, scale_y) from the input to the output resolution.
        image_size (int, int): output (H, W).
        threshold (float): binarisation threshold of the pasted probabilities.

    Returns:
        Tensor[D, H, W] bool.
    """
    boxes = window_boxes.tensor.clone()
    boxes[:, 0::2] *= scale[0]
    boxes[:, 1::2] *= scale[1]
    if len(windows) == 0:  # (paste_masks_in_image would return uint8 here)
        return torch.zeros((0,) + tuple(image_size), dtype=torch.bool, device=boxes.device)
    sides = torch.tensor([w.shape[-1] for w in windows.windows], dtype=torch.int64)
    inside = _windows_inside(boxes, image_size).to(sides.device)
    groups = torch.unique(sides[inside]).tolist()
    if len(groups) == 1 and bool(inside.all()):
        # common case: paste directly, no copy of the (D, H, W) result
        probs = torch.stack(windows.windows).sigmoid()
        return paste_masks_in_image(probs, boxes, image_size, threshold)
    masks = torch.zeros((len(windows),) + tuple(image_size), dtype=torch.bool, device=boxes.device)
    for side in groups:
        index = torch.nonzero((sides == side) & inside).flatten()
        probs = torch.stack([windows.windows[i] for i in index.tolist()]).sigmoid()
        index = index.to(boxes.device)
        pasted = paste_masks_in_image(probs, boxes[index], image_size, threshold)
        masks.index_copy_(0, index, pasted)
    return masks
