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
from detectron2.config import configurable
from detectron2.layers import ROIAlign, paste_masks_in_image
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from detectron2.utils.memory import retry_if_cuda_oom
from torch import Tensor

from .losses import blender_mask_loss

__all__ = ["Blender", "blend", "crop_boxes", "maskness"]

# With MODEL.BLENDMASK.TRAIN_BOXES "predicted", a positive location's predicted box replaces its
# ground-truth box when they overlap at least this much: Mask R-CNN's foreground IoU for the
# proposals its mask head trains on. Below it (early in training) the box says little about the
# object, and the ground-truth box is used.
PREDICTED_BOX_MIN_IOU = 0.5


def crop_boxes(boxes: Tensor, image_size, scale: float = 1.0) -> Tensor:
    """
    The boxes the blender crops the bases with, and pastes its masks into: each box scaled by
    ``scale`` about its centre, then clipped to the image. With ``scale`` 1 (AdelaiDet) a mask
    ends at its detection's box; above 1 it can reach beyond a box that cut its object short.

    Args:
        boxes: (P, 4) XYXY.
        image_size: (height, width) to clip to.
        scale: MODEL.BLENDMASK.CROP_SCALE, >= 1.

    Returns:
        (P, 4) XYXY, a new tensor.
    """
    if scale == 1.0:
        # Not recomputed from the centre: the boxes stay exact to the last bit.
        crops = Boxes(boxes.clone())
    else:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        half_sizes = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
        crops = Boxes(torch.cat([centres - half_sizes, centres + half_sizes], dim=1))
    crops.clip(image_size)
    return crops.tensor


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


def maskness(probs: Tensor, threshold: float = 0.5) -> Tensor:
    """
    How confident each mask is about its own pixels (SOLOv2's "maskness"): the mean probability
    over the pixels above ``threshold``, 0 for a mask with no such pixel.

    Args:
        probs: (P, ..., R, R) mask probabilities.

    Returns:
        (P,) values in [threshold, 1], or 0.
    """
    probs = probs.flatten(1)
    foreground = (probs > threshold).to(probs.dtype)
    return (probs * foreground).sum(dim=1) / foreground.sum(dim=1).clamp(min=1.0)


class Blender:
    """
    Pools the bases with ROIAlign (aligned, one sample per bin) and blends them.

    Inference (:meth:`predict`) crops with the predicted boxes. Training (:meth:`losses`) crops
    with the ground-truth boxes (AdelaiDet), or with each positive location's own predicted box
    (``train_boxes="predicted"``), so that the blender learns the boxes it will be given at
    inference, as Mask R-CNN's mask head learns on proposals. The caller (BlendMask) picks one by
    its ``training`` flag. Either way the crop is :func:`crop_boxes` of the box: enlarged by
    ``crop_scale`` and clipped to the image, in training and inference alike.
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
        train_boxes: str = "gt",
        rescore_by_maskness: bool = False,
        crop_scale: float = 1.0,
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
            train_boxes: "gt" or "predicted", the boxes that crop the bases and the mask targets
                in training; "predicted" falls back to the ground-truth box for a location
                whose predicted box overlaps its object less than ``PREDICTED_BOX_MIN_IOU``.
            rescore_by_maskness: at inference, multiply each detection's score by its mask's
                :func:`maskness` (AdelaiDet: False, the score is FCOS's alone).
            crop_scale: the bases and the mask targets are cropped with each box scaled by this
                factor about its centre and clipped to the image (:func:`crop_boxes`), and the
                masks are pasted into those crops. AdelaiDet: 1.
        """
        if not crop_scale >= 1.0:
            raise ValueError(f"MODEL.BLENDMASK.CROP_SCALE must be >= 1, got {crop_scale}")
        self.crop_scale = crop_scale
        if train_boxes not in ("gt", "predicted"):
            raise ValueError(
                f"MODEL.BLENDMASK.TRAIN_BOXES must be 'gt' or 'predicted', got {train_boxes!r}"
            )
        self.train_boxes = train_boxes
        self.rescore_by_maskness = rescore_by_maskness
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
        # detectron2's BitMasks.crop_and_resize settings (mask targets on the box's R x R grid).
        self._mask_cropper = ROIAlign(
            (pooler_resolution, pooler_resolution), 1.0, sampling_ratio=0, aligned=True
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
            "train_boxes": bm.TRAIN_BOXES,
            "rescore_by_maskness": bm.RESCORE_BY_MASKNESS,
            "crop_scale": bm.CROP_SCALE,
        }

    def crop_boxes(self, boxes: Tensor, image_size) -> Tensor:
        """:func:`crop_boxes` with this blender's ``crop_scale``: (P, 4) -> (P, 4)."""
        return crop_boxes(boxes, image_size, self.crop_scale)

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
            positives: P entries with ``im_inds`` (ascending), ``gt_inds`` (into the
                concatenated gts), ``gt_ctrs`` and, for ``train_boxes="predicted"``,
                ``box_preds`` (P, 4).
            gt_instances: N Instances with ``gt_boxes`` and ``gt_masks``.
            loss_denorm: sum of the centerness targets (FCOS's box-loss normaliser).

        Returns:
            {"loss_mask": scalar}: centerness-weighted mean pixel BCE, over every positive
            location (a gt seen by several locations counts several times).
        """
        if len(positives) == 0:
            # Zero, but connected to the graph so that every parameter gets a gradient.
            return {"loss_mask": attns.sum() * 0 + sum(b.sum() for b in bases) * 0}
        if self.train_boxes == "gt":
            crops = [self.crop_boxes(x.gt_boxes.tensor, x.image_size) for x in gt_instances]
            rois = self.pooler(bases, [Boxes(c) for c in crops])[positives.gt_inds]  # (P, K, R, R)
            targets = torch.cat(
                [
                    x.gt_masks.crop_and_resize(c, self.pooler_resolution)
                    for x, c in zip(gt_instances, crops)
                    if len(x) > 0
                ]
            )[positives.gt_inds]
        else:
            rois, targets = self._crop_with_predicted_boxes(bases, positives, gt_instances)
        mask_logits = blend(rois, attns, self.attn_size, self.top_interp)
        loss = blender_mask_loss(mask_logits, targets, positives.gt_ctrs, loss_denorm)
        return {"loss_mask": self.instance_loss_weight * loss}

    def _crop_with_predicted_boxes(
        self, bases: List[Tensor], positives: Instances, gt_instances: List[Instances]
    ):
        """
        Crop the bases and each positive's ground-truth mask with the positive's predicted box,
        or its ground-truth box where the two overlap less than ``PREDICTED_BOX_MIN_IOU`` (the
        crop is :meth:`crop_boxes` of that box).

        Returns:
            rois (P, K, R, R) and mask targets (P, R, R), in the order of ``positives``.
        """
        gt_boxes = torch.cat([x.gt_boxes.tensor for x in gt_instances])[positives.gt_inds]
        pred_boxes = positives.box_preds.to(gt_boxes.dtype)
        overlap = matched_pairwise_iou(Boxes(pred_boxes), Boxes(gt_boxes))
        use_pred = (overlap >= PREDICTED_BOX_MIN_IOU)[:, None]
        boxes = torch.where(use_pred, pred_boxes, gt_boxes)

        num_per_image = torch.bincount(positives.im_inds, minlength=len(gt_instances)).tolist()
        boxes_per_image = [
            self.crop_boxes(b, gt.image_size)
            for b, gt in zip(boxes.split(num_per_image), gt_instances)
        ]
        # The pooler returns the rois in image order, which is the order of the positives.
        rois = self.pooler(bases, [Boxes(b) for b in boxes_per_image])
        first_gt = 0
        targets = []
        for gt, boxes_i, gt_inds_i in zip(
            gt_instances, boxes_per_image, positives.gt_inds.split(num_per_image)
        ):
            if len(boxes_i) > 0:
                targets.append(self._crop_masks(gt.gt_masks, gt_inds_i - first_gt, boxes_i))
            first_gt += len(gt)
        return rois, torch.cat(targets)

    def _crop_masks(self, masks, inds: Tensor, boxes: Tensor) -> Tensor:
        """
        Args:
            masks: one image's G_i ground-truth masks, BitMasks or PolygonMasks.
            inds: (p,) long, the mask of each box; boxes: (p, 4) XYXY.

        Returns:
            (p, R, R) bool, mask ``inds[j]`` cropped with ``boxes[j]`` and resized as
            ``crop_and_resize`` does.
        """
        if isinstance(masks, BitMasks):
            # ROIAlign over the image's masks with the gt index as the batch index: no copy of a
            # full-size mask per positive location.
            rois = torch.cat([inds.to(boxes.dtype)[:, None], boxes], dim=1).float()
            cropped = self._mask_cropper(masks.tensor.to(torch.float32)[:, None], rois)
            return cropped.squeeze(1) >= 0.5
        # Polygons are rasterised per box anyway; indexing them copies only their vertices.
        return masks[inds].crop_and_resize(boxes, self.pooler_resolution)

    def rescore(self, scores: Tensor, probs: Tensor) -> Tensor:
        """
        The detections' final scores: ``scores`` (P,), times the maskness of their mask
        probabilities ``probs`` (P, ..., R, R) when ``rescore_by_maskness``.
        """
        if not self.rescore_by_maskness:
            return scores
        return scores * maskness(probs).to(scores.dtype)

    def predict(self, bases: List[Tensor], proposals: List[Instances]) -> List[Instances]:
        """
        Add ``mask_probs`` (n, 1, R, R) to each image's proposals: mask probabilities on the
        :meth:`crop_boxes` of the ``pred_boxes``, which :meth:`paste` pastes into the image. Also
        rescore the ``scores`` (see :meth:`rescore`). In place.

        Args:
            bases: [(N, K, H/4, W/4)].
            proposals: N Instances with ``pred_boxes`` (input pixels; BlendMask clips them to
                the image), ``top_feat`` (n, K*M*M) and ``scores`` (n,), sorted by decreasing
                score.

        Returns:
            ``proposals``, each sorted again by decreasing score when rescoring changed the
            order (a stable sort: ties keep their order).
        """
        num_per_image = [len(p) for p in proposals]
        resolution = self.pooler_resolution
        if sum(num_per_image) == 0:
            for p in proposals:
                p.mask_probs = bases[0].new_zeros((0, 1, resolution, resolution))
            return proposals
        crops = [Boxes(self.crop_boxes(p.pred_boxes.tensor, p.image_size)) for p in proposals]
        rois = self.pooler(bases, crops)
        attns = torch.cat([p.top_feat for p in proposals])
        masks = blend(rois, attns, self.attn_size, self.top_interp).sigmoid().unsqueeze(1)
        for p, m in zip(proposals, masks.split(num_per_image)):
            p.mask_probs = m
            p.scores = self.rescore(p.scores, m)
        if not self.rescore_by_maskness:
            return proposals
        # Back to decreasing score, as detectron2's models return them.
        return [p[p.scores.sort(descending=True, stable=True)[1]] for p in proposals]

    def paste(self, mask_probs: Tensor, boxes: Boxes, image_size, threshold: float = 0.5):
        """
        Paste :meth:`predict`'s masks into an image, as ``detector_postprocess`` pastes Mask
        R-CNN's into their boxes, but into the boxes' crops.

        Args:
            mask_probs: (n, 1, R, R); boxes: n boxes in that image; image_size: (height, width).

        Returns:
            (n, height, width) bool.
        """
        crops = Boxes(self.crop_boxes(boxes.tensor, image_size))
        paste = retry_if_cuda_oom(paste_masks_in_image)
        return paste(mask_probs[:, 0], crops, image_size, threshold=threshold)
