"""
Loss functions of FCOS and BlendMask, as pure functions of tensors.

Shape shorthand in this module:

    P: number of positive locations (the instances the box and mask losses see)
    R: mask resolution (BlendMask's BOTTOM_RESOLUTION)
    N, H, W, C: batch, height, width, classes of a dense prediction

(The focal classification loss is fvcore's ``sigmoid_focal_loss_jit``, as in detectron2's FCOS.)
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor

__all__ = [
    "reduce_mean",
    "distance_box_ious",
    "iou_loss",
    "blender_mask_loss",
    "basis_semantic_loss",
]

IOU_LOSS_TYPES = ("iou", "linear_iou", "giou")


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of ``value`` over all processes (identity without distributed training)."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size


def _distance_ious_and_unions(pred: Tensor, target: Tensor):
    pl, pt, pr, pb = pred.unbind(dim=1)
    tl, tt, tr, tb = target.unbind(dim=1)
    target_area = (tl + tr) * (tt + tb)
    pred_area = (pl + pr) * (pt + pb)
    inter = (torch.min(pl, tl) + torch.min(pr, tr)) * (torch.min(pt, tt) + torch.min(pb, tb))
    union = target_area + pred_area - inter
    return (inter + 1.0) / (union + 1.0), union


def distance_box_ious(pred: Tensor, target: Tensor) -> Tensor:
    """
    IoU of boxes given as distances (l, t, r, b) from the same point, with the +1 smoothing of
    :func:`iou_loss`: (I + 1) / (U + 1).

    Args:
        pred, target: (P, 4) non-negative distances.

    Returns:
        (P,) IoUs in (0, 1].
    """
    return _distance_ious_and_unions(pred, target)[0]


def iou_loss(pred: Tensor, target: Tensor, weight: Tensor = None, loss_type: str = "giou"):
    """
    IoU-family loss between boxes given as distances from the same point.

    IoU has +1 smoothing in the distances' unit (FCOS uses stride units):
    IoU = (I + 1) / (U + 1); GIoU = IoU - (C - U) / C with C the enclosing box area.

    Args:
        pred, target: (P, 4) non-negative distances (l, t, r, b).
        weight: (P,) per-box weight, or None.
        loss_type: "iou" (-log IoU), "linear_iou" (1 - IoU) or "giou" (1 - GIoU).

    Returns:
        Scalar: the (weighted) sum over the P boxes.
    """
    if loss_type not in IOU_LOSS_TYPES:
        raise ValueError(
            f"MODEL.FCOS.LOC_LOSS_TYPE must be one of {IOU_LOSS_TYPES}, got {loss_type!r}"
        )
    ious, union = _distance_ious_and_unions(pred, target)
    if loss_type == "iou":
        losses = -torch.log(ious)
    elif loss_type == "linear_iou":
        losses = 1 - ious
    else:
        pl, pt, pr, pb = pred.unbind(dim=1)
        tl, tt, tr, tb = target.unbind(dim=1)
        enclose = (torch.max(pl, tl) + torch.max(pr, tr)) * (torch.max(pt, tt) + torch.max(pb, tb))
        gious = ious - (enclose - union) / enclose
        losses = 1 - gious
    if weight is not None:
        losses = losses * weight
    return losses.sum()


def blender_mask_loss(
    mask_logits: Tensor, mask_targets: Tensor, weights: Tensor, normalizer: Tensor
) -> Tensor:
    """
    BlendMask's mask loss: per instance, the mean binary cross-entropy over its R x R pixels,
    weighted by the instance's centerness target and normalised by the batch's sum of centerness
    targets (the same normaliser as the box loss), so that off-centre locations, whose boxes and
    attentions are least reliable, count less.

    Args:
        mask_logits: (P, R, R) blended mask logits.
        mask_targets: (P, R, R) binary targets (any dtype; cast to the logits' dtype).
        weights: (P,) centerness targets c*.
        normalizer: scalar, D = sum of c* (averaged over processes).

    Returns:
        Scalar loss.
    """
    per_pixel = F.binary_cross_entropy_with_logits(
        mask_logits, mask_targets.to(dtype=mask_logits.dtype), reduction="none"
    )
    per_instance = per_pixel.flatten(1).mean(dim=1)
    return (per_instance * weights).sum() / normalizer


def basis_semantic_loss(seg_logits: Tensor, sem_targets: Tensor, stride: int) -> Tensor:
    """
    Auxiliary thing-semantic loss of the basis module.

    Args:
        seg_logits: (N, C+1, H/s, W/s) semantic logits at stride s.
        sem_targets: (N, H, W) long, thing class + 1 per pixel (0 = background, also for
            padding), at the padded input resolution.
        stride: s, the stride of the semantic head's input feature.

    Returns:
        Scalar: cross-entropy averaged over all pixels of the downsampled target. The target is
        downsampled by nearest-neighbour sampling (pixel (i*s, j*s)), as in AdelaiDet.
    """
    h, w = seg_logits.shape[-2:]
    if sem_targets.shape[-2:] != (h * stride, w * stride):
        raise ValueError(
            f"basis_sem of padded size {tuple(sem_targets.shape[-2:])} does not match semantic "
            f"logits {(h, w)} at stride {stride} (MODEL.BASIS_MODULE.COMMON_STRIDE, or the "
            "stride of MODEL.BASIS_MODULE.SEMANTIC_IN_FEATURE)"
        )
    targets = sem_targets[:, ::stride, ::stride]
    return F.cross_entropy(seg_logits, targets.long())
