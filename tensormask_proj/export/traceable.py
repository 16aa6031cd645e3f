"""
Post-processing steps written so that ``torch.jit.trace`` records them for any number of
detections, shared by the deployable TensorMask and BlendMask.

Tracing records tensor operations and replays them; Python-side decisions on data (``if
n == 0``, ``.tolist()``, loops over detections) are frozen at the values seen while tracing. The
models' own inference code uses such decisions for speed (per-box pasting, skipping empty
levels), so the deployable models use these helpers instead: every count stays a tensor, and
the only Python loops are over things fixed by the config (levels, window sizes).

Shape shorthand: D detections, n_g detections of group g, H, W: image size.
"""

from typing import Sequence, Tuple

import torch
from detectron2.layers.mask_ops import _do_paste_mask
from torch import Tensor
from torchvision.ops import nms

__all__ = [
    "batched_nms",
    "clamped_count",
    "in_group_order",
    "paste_masks",
    "select",
    "stack_sizes",
]


def clamped_count(x: Tensor, limit: int):
    """min(len(x), limit); a traced value when tracing (sizes are then 0-dim tensors)."""
    count = x.shape[0]
    return torch.clamp(count, max=limit) if isinstance(count, Tensor) else min(count, limit)


def stack_sizes(sizes: Sequence, device) -> Tensor:
    """
    Sizes (ints, or traced 0-dim tensors when tracing) as one int64 tensor that stays traced
    (``torch.tensor``/``as_tensor`` would record traced sizes as constants).
    """
    return torch.stack([s if isinstance(s, Tensor) else torch.tensor(s) for s in sizes]).to(device)


def select(mask: Tensor) -> Tensor:
    """Indices (int64, 1-D) where ``mask`` is true."""
    return torch.nonzero(mask).flatten()


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """
    Class-aware NMS: indices of the kept boxes, by decreasing score.

    The boxes of each class are moved apart by more than the extent of all boxes, so that one
    NMS call never compares two classes. torchvision's ``batched_nms`` does the same with an
    offset of (max + 1), which assumes non-negative coordinates (TensorMask's windows reach past
    the image) and, when tracing, fails on zero boxes (``max`` of an empty tensor): here a zero
    is appended so the extent is defined for any count.
    """
    coords = torch.cat([boxes.flatten(), boxes.new_zeros(1)])
    extent = coords.max() - coords.min() + 1
    shifted = boxes + (classes.to(boxes.dtype) * extent)[:, None]
    return nms(shifted, scores, iou_threshold)


def in_group_order(parts: Sequence[Tuple[Tensor, Tensor]]) -> Tensor:
    """
    Reassemble per-group results into detection order.

    Args:
        parts: (index, values) per group: ``values[j]`` belongs to detection ``index[j]``; the
            indices of all groups together are a permutation of range(D).

    Returns:
        Tensor[D, ...]: the values, row i for detection i.
    """
    index = torch.cat([p[0] for p in parts])
    values = torch.cat([p[1] for p in parts])
    return values[torch.argsort(index)]


def paste_masks(probs: Tensor, boxes: Tensor, image_size: Tuple, threshold: float = 0.5) -> Tensor:
    """
    Paste square probability masks into the image: detectron2's ``paste_masks_in_image``
    (bilinear, ``align_corners=False``, zero outside the mask) for all detections at once.

    detectron2 pastes one box at a time on the CPU, each into its box's bounding region; the
    values are the same, but the loop count would be frozen by tracing.

    Args:
        probs (Tensor[D, S, S]): probabilities.
        boxes (Tensor[D, 4]): XYXY boxes the masks fill, in image pixels (not clipped).
        image_size: (H, W), ints or traced 0-dim tensors.

    Returns:
        Tensor[D, H, W] bool.
    """
    height, width = image_size
    pasted, _ = _do_paste_mask(probs[:, None], boxes, height, width, skip_empty=False)
    return pasted >= threshold
