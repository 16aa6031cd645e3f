"""
BlendMask's blender: crops the bases with each instance's box and mixes them with the instance's
attention maps (paper eqs. 1-4). It has no parameters.

Shape shorthand in this module:

    N: number of images in the minibatch
    K: number of bases; M: attention side (ATTN_SIZE); R: RoI side (BOTTOM_RESOLUTION)
    P: number of instances (positive locations in training, detections in inference)
    G: number of ground-truth instances in the minibatch
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Instances

from .losses import blender_mask_loss

__all__ = ["Blender", "blend"]


def blend(rois: Tensor, attns: Tensor, attn_size: int, interp_mode: str = "bilinear") -> Tensor:
    """
    Mix cropped bases with attentions: m = sum_k softmax_k(upsample(a))_k * r_k.

    Args:
        rois: (P, K, R, R) bases cropped and resized to each instance's box.
        attns: (P, K*M*M) attention logits, basis-major (channel k*M*M + i*M + j).
        attn_size: M.
        interp_mode: ``F.interpolate`` mode for the M x M -> R x R upsampling ("bilinear" uses
            align_corners=False).

    Returns:
        (P, R, R) mask logits.
    """
    num, num_bases, height, width = rois.shape
    if num == 0:
        return rois.new_zeros((0, height, width))
    attns = attns.view(num, num_bases, attn_size, attn_size)
    # The softmax over bases is taken after upsampling, so each output pixel's weights sum to 1.
    attns = F.interpolate(attns, size=(height, width), mode=interp_mode).softmax(dim=1)
    return (rois * attns).sum(dim=1)


class Blender:
    """
    Pools the bases with ROIAlign (aligned, one sample per bin) and blends them.

    Training uses the ground-truth boxes (:meth:`losses`); inference the predicted boxes
    (:meth:`predict`). The caller (BlendMask) picks one by its ``training`` flag.
    """

    @configurable
    def __init__(
        self,
        *,
        pooler_resolution: int = 56,
        pooler_scales=(0.25,),
        sampling_ratio: int = 1,
        pooler_type: str = "ROIAlignV2",
        attn_size: int = 14,
        top_interp: str = "bilinear",
        instance_loss_weight: float = 1.0,
    ):
        """
        Args:
            pooler_resolution: R.
            pooler_scales: one scale, 1 / stride of the bases.
            sampling_ratio: ROIAlign samples per bin side.
            pooler_type: detectron2 ROIPooler type ("ROIAlignV2" = aligned ROIAlign).
            attn_size: M.
            top_interp: attention upsampling mode.
            instance_loss_weight: weight of the mask loss.
        """
        if len(pooler_scales) != 1:
            raise ValueError(
                f"MODEL.BLENDMASK.POOLER_SCALES must have one entry (the bases are one level), "
                f"got {pooler_scales}"
            )
        self.pooler_resolution = pooler_resolution
        self.attn_size = attn_size
        self.top_interp = top_interp
        self.instance_loss_weight = instance_loss_weight
        # With a single level, canonical_level/box_size play no role.
        self.pooler = ROIPooler(
            output_size=pooler_resolution,
            scales=tuple(pooler_scales),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
            canonical_level=2,
        )

    @classmethod
    def from_config(cls, cfg):
        bm = cfg.MODEL.BLENDMASK
        return {
            "pooler_resolution": bm.BOTTOM_RESOLUTION,
            "pooler_scales": bm.POOLER_SCALES,
            "sampling_ratio": bm.POOLER_SAMPLING_RATIO,
            "pooler_type": bm.POOLER_TYPE,
            "attn_size": bm.ATTN_SIZE,
            "top_interp": bm.TOP_INTERP,
            "instance_loss_weight": bm.INSTANCE_LOSS_WEIGHT,
        }

    def losses(
        self,
        bases: List[Tensor],
        attns: Tensor,
        positives: Instances,
        gt_instances: List[Instances],
        loss_denorm: Tensor,
    ):
        """
        Args:
            bases: [(N, K, H/4, W/4)].
            attns: (P, K*M*M) attentions at the positive locations.
            positives: P entries with ``gt_inds`` (into the concatenated gts) and ``gt_ctrs``.
            gt_instances: N Instances with ``gt_boxes`` and ``gt_masks``.
            loss_denorm: sum of the centerness targets (FCOS's box-loss normaliser).

        Returns:
            {"loss_mask": scalar}: centerness-weighted mean pixel BCE, over every positive
            location (a gt seen by several locations counts several times).
        """
        if len(positives) == 0:
            # Zero, but connected to the graph so that every parameter gets a gradient.
            return {"loss_mask": attns.sum() * 0 + sum(b.sum() for b in bases) * 0}
        gt_boxes = [x.gt_boxes for x in gt_instances]
        rois = self.pooler(bases, gt_boxes)[positives.gt_inds]  # (P, K, R, R)
        mask_logits = blend(rois, attns, self.attn_size, self.top_interp)
        targets = torch.cat(
            [
                x.gt_masks.crop_and_resize(x.gt_boxes.tensor, self.pooler_resolution)
                for x in gt_instances
                if len(x) > 0
            ]
        )[positives.gt_inds]
        loss = blender_mask_loss(mask_logits, targets, positives.gt_ctrs, loss_denorm)
        return {"loss_mask": self.instance_loss_weight * loss}

    def predict(self, bases: List[Tensor], proposals: List[Instances]) -> None:
        """
        Add ``pred_masks`` (n, 1, R, R) mask probabilities to each image's proposals, in place.

        Args:
            bases: [(N, K, H/4, W/4)].
            proposals: N Instances with ``pred_boxes`` (unclipped, input pixels) and
                ``top_feat`` (n, K*M*M).
        """
        num_per_image = [len(p) for p in proposals]
        resolution = self.pooler_resolution
        if sum(num_per_image) == 0:
            for p in proposals:
                p.pred_masks = bases[0].new_zeros((0, 1, resolution, resolution))
            return
        rois = self.pooler(bases, [p.pred_boxes for p in proposals])
        attns = torch.cat([p.top_feat for p in proposals])
        masks = blend(rois, attns, self.attn_size, self.top_interp).sigmoid().unsqueeze(1)
        for p, m in zip(proposals, masks.split(num_per_image)):
            p.pred_masks = m
