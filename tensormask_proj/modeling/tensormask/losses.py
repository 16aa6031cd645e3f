"""
Losses of TensorMask (paper §4.2 "Loss"; official ``TensorMask.losses``).

Shape shorthand / naming:
    R: windows of the batch (all images, all levels), K: classes, P: positive windows,
    S: side of a natural mask window. Loss keys: ``loss_cls``, ``loss_box_reg``, ``loss_mask``.

All three losses are sums divided by the same normalizer, max(1, number of positives in the
batch), as in the official code (no EMA and no cross-device average of the normalizer).
"""

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss_star_jit

__all__ = ["classification_loss", "box_regression_loss", "mask_loss"]


def classification_loss(
    pred_logits: torch.Tensor,
    gt_labels: torch.Tensor,
    num_classes: int,
    alpha: float,
    gamma: float,
    normalizer: float,
) -> torch.Tensor:
    """
    FL* (RetinaNet paper, appendix) summed over valid windows and classes.

    Args:
        pred_logits (Tensor[R, K]): class logits.
        gt_labels (Tensor[R], int64): class in [0, K), K for background, -1 ignored.
        alpha, gamma: FL* parameters (official 0.3, 3.0): per element
            -log(sigmoid(gamma * x * (2t - 1))) / gamma, times alpha for t = 1, 1 - alpha for t = 0.
        normalizer: divisor of the sum.

    Returns:
        scalar Tensor.
    """
    valid = gt_labels >= 0
    # One-hot over K + 1 columns, background (K) dropped: negatives are all-zero rows.
    targets = F.one_hot(gt_labels[valid], num_classes + 1)[:, :num_classes].to(pred_logits.dtype)
    loss = sigmoid_focal_loss_star_jit(
        pred_logits[valid], targets, alpha=alpha, gamma=gamma, reduction="sum"
    )
    return loss / normalizer


def box_regression_loss(
    pred_deltas: torch.Tensor, gt_deltas: torch.Tensor, normalizer: float
) -> torch.Tensor:
    """
    L1 loss (fvcore smooth_l1 with beta 0) summed over the positives' 4 deltas.

    Args:
        pred_deltas (Tensor[P, 4]): predicted deltas of the positive windows.
        gt_deltas (Tensor[P, 4]): Box2BoxTransform targets (window -> ground-truth box).
        normalizer: divisor of the sum.
    """
    return (pred_deltas - gt_deltas).abs().sum() / normalizer


def mask_loss(
    pred_windows: torch.Tensor,
    gt_windows: torch.Tensor,
    loss_weight: float,
    pos_weight: float,
    normalizer: float,
) -> torch.Tensor:
    """
    Per-pixel BCE of mask windows of one size, averaged over the pixels of every window and summed
    over windows: sum_p loss_weight * mean_{S x S} BCE(pred_p, gt_p; pos_weight) / normalizer.

    Args:
        pred_windows (Tensor[P, S, S]): natural mask logits of the positive windows.
        gt_windows (Tensor[P, S, S]): binary targets (the ground-truth mask cropped to the window
            box and resampled to S x S).
        loss_weight (float): MASK_LOSS_WEIGHT (official 2.0).
        pos_weight (float): weight of foreground pixels (official 1.5).
        normalizer: divisor of the sum.
    """
    side = pred_windows.shape[-1]
    loss = F.binary_cross_entropy_with_logits(
        pred_windows,
        gt_windows.to(pred_windows.dtype),
        pos_weight=pred_windows.new_tensor(pos_weight),
        reduction="sum",
    )
    return loss * (loss_weight / (side * side)) / normalizer
