"""
FCOS post-processing (AdelaiDet's): per-level score threshold and top-k, box decoding,
class-aware NMS and the post-NMS top-k. Pure functions of tensors.

Shape shorthand in this module:

    N: number of images; L: number of levels; Hi, Wi, si: size and stride of level i
    C: number of foreground classes
"""

from typing import List, Sequence, Tuple

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances
from torch import Tensor

__all__ = ["predict_instances", "decode_level", "distances_to_boxes", "best_class_only"]


@torch.no_grad()
def predict_instances(
    locations: Sequence[Tensor],
    strides: Sequence[int],
    pred_logits: Sequence[Tensor],
    pred_deltas: Sequence[Tensor],
    pred_ctrness: Sequence[Tensor],
    image_sizes: Sequence[Tuple[int, int]],
    *,
    score_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    thresh_with_ctr: bool,
    one_class_per_location: bool = False,
) -> List[Instances]:
    """
    Args:
        locations: L tensors (Hi*Wi, 2).
        strides: L strides.
        pred_logits, pred_deltas, pred_ctrness: L tensors (N, Hi*Wi, C | 4 | 1): class logits,
            (l, t, r, b) distances in strides, centerness logits.
        image_sizes: N (h, w) of the unpadded inputs.
        score_thresh, pre_nms_topk: per-level pre-filters, see :func:`decode_level`.
        post_nms_topk: detections kept per image after NMS (ties at the boundary are kept).
        nms_thresh: IoU threshold of the class-aware NMS.
        thresh_with_ctr: threshold p_cls * p_ctr instead of p_cls.
        one_class_per_location: a location yields only its best class (see
            :func:`best_class_only`).

    Returns:
        N Instances with ``pred_boxes`` (unclipped, input pixels), ``scores`` = sqrt(p_cls *
        p_ctr), ``pred_classes``, ``locations``, ``fpn_levels``; sorted by decreasing score.
    """
    results = []
    for img_idx, image_size in enumerate(image_sizes):
        per_level = [
            decode_level(
                locations[level],
                strides[level],
                level,
                pred_logits[level][img_idx],
                pred_deltas[level][img_idx],
                pred_ctrness[level][img_idx],
                score_thresh=score_thresh,
                topk=pre_nms_topk,
                thresh_with_ctr=thresh_with_ctr,
                one_class_per_location=one_class_per_location,
                image_size=image_size,
            )
            for level in range(len(locations))
        ]
        result = Instances.cat(per_level)
        keep = batched_nms(result.pred_boxes.tensor, result.scores, result.pred_classes, nms_thresh)
        result = result[keep]  # sorted by decreasing score
        if len(result) > post_nms_topk > 0:
            # AdelaiDet keeps every detection scoring at least the post_nms_topk-th best score,
            # so ties at the boundary can keep a few more than post_nms_topk.
            kth = torch.kthvalue(result.scores.cpu(), len(result) - post_nms_topk + 1).values
            result = result[result.scores >= kth.item()]
        results.append(result)
    return results


def decode_level(
    locations: Tensor,
    stride: int,
    level: int,
    logits: Tensor,
    deltas: Tensor,
    ctrness: Tensor,
    *,
    score_thresh: float,
    topk: int,
    thresh_with_ctr: bool,
    one_class_per_location: bool = False,
    image_size: Tuple[int, int],
) -> Instances:
    """
    Candidates of one level of one image.

    Args:
        locations: (Hi*Wi, 2); logits: (Hi*Wi, C); deltas: (Hi*Wi, 4); ctrness: (Hi*Wi, 1).

    Returns:
        Instances of up to ``topk`` (location, class) candidates scoring above
        ``score_thresh``, with scores sqrt(p_cls * p_ctr). A location can yield several classes,
        unless ``one_class_per_location``.

    The steps are those of ``DenseDetector._decode_per_level_predictions`` (threshold, top-k,
    box decoding), which BlendMask does not call because:

    * it returns only boxes, scores and classes, and BlendMask needs each detection's location
      and level (the cell its top layer is evaluated at, and output fields);
    * it thresholds and ranks one score, while FCOS without THRESH_WITH_CTR (AdelaiDet's
      default) thresholds p_cls and ranks p_cls * p_ctr, and ONE_CLASS_PER_LOCATION masks
      classes first;
    * it always sorts the candidates, while here a level with at most ``topk`` of them keeps
      them in location order, so that ties reach NMS in AdelaiDet's order;
    * it decodes anchors with a ``box2box_transform``; FCOS has locations and distances (which
      detectron2's own FCOS writes as stride-sized anchors and ``Box2BoxTransformLinear``).

    ``_decode_multi_level_predictions`` is its loop over levels, and in detectron2 0.6 it
    ignores its threshold and top-k arguments for the test-time attributes, so the training
    values (AdelaiDet's YIELD_PROPOSAL) could not be passed either.
    """
    scores = logits.sigmoid()
    if one_class_per_location:
        scores = best_class_only(scores)
    ctr = ctrness.sigmoid()
    if thresh_with_ctr:
        scores = scores * ctr
    # Two pre-filters, both to keep NMS cheap: a score threshold, then the top-k.
    candidate = scores > score_thresh
    if not thresh_with_ctr:
        scores = scores * ctr
    cand_scores = scores[candidate]
    loc_inds, classes = torch.nonzero(candidate, as_tuple=True)
    if len(cand_scores) > topk:
        cand_scores, order = cand_scores.topk(topk)
        loc_inds, classes = loc_inds[order], classes[order]
    loc = locations[loc_inds]
    # Not clipped here (detector_postprocess clips later).
    boxes = distances_to_boxes(loc, deltas[loc_inds] * stride)
    return Instances(
        image_size,
        pred_boxes=Boxes(boxes),
        scores=torch.sqrt(cand_scores),
        pred_classes=classes,
        locations=loc,
        fpn_levels=torch.full_like(classes, level),
    )


def distances_to_boxes(locations: Tensor, distances: Tensor) -> Tensor:
    """
    FCOS's box of a location: (x - l, y - t, x + r, y + b).

    Args:
        locations: (P, 2) (x, y) in input pixels.
        distances: (P, 4) (l, t, r, b) in input pixels.

    Returns:
        (P, 4) XYXY boxes.
    """
    return torch.cat([locations - distances[:, :2], locations + distances[:, 2:]], dim=1)


def best_class_only(class_probs: Tensor) -> Tensor:
    """
    Zero every class probability of a location but its highest (ties all kept).

    FCOS scores each class with its own sigmoid, so one location can put two classes above the
    score threshold; class-aware NMS keeps both, and the second becomes a confident false
    positive of its class. (Multiplying by the centerness, which is shared by the classes, does
    not change which class is the best.)

    Args:
        class_probs: (R, C).

    Returns:
        (R, C), the same values at each row's maximum and 0 elsewhere.
    """
    is_best = class_probs == class_probs.max(dim=1, keepdim=True).values
    return class_probs * is_best.to(class_probs.dtype)
