"""
The TensorMask meta-architecture (Chen et al. 2019), built on detectron2's ``DenseDetector``.

Shape shorthand / naming:
    N: images, L: levels, R: windows of an image (all levels), K: classes, P: positive windows,
    D: detections of an image, S_out: side of a natural mask window.
    ``pred_*``: network outputs, ``gt_*``: targets; ``_i`` / ``_per_image``: one image.

Pieces: the head (``TensorMaskHead``, ``build_tensormask_head``) with its mask branch
(``mask_heads.MaskBranch``, one class per variant), ``TensorMaskAnchorGenerator`` (sliding
windows), ``assign_windows`` (label assignment), ``losses`` and ``postprocess``. The mask branch
computes the mask windows on its own: its ``losses`` those of the positive windows in training,
its ``predict`` those of the detections (or, with mask-bb NMS, of the candidates) at inference,
each called once per batch.
"""

import logging
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, ImageList, Instances

from .anchor_generator import TensorMaskAnchorGenerator
from .assignment import PositiveWindows, assign_windows
from .head import TensorMaskHead, build_tensormask_head
from .losses import box_regression_loss, classification_loss
from .mask_heads import MaskBranch
from .postprocess import mask_window_boxes, paste_mask_windows
from .variants import check_tensormask_config

__all__ = ["TensorMask"]

logger = logging.getLogger(__name__)

# Entries of older checkpoints that are not (or no longer) part of the state_dict.
_STALE_KEYS = ("pixel_mean", "pixel_std", "anchor_generator.cell_anchors.")


@META_ARCH_REGISTRY.register()
class TensorMask(DenseDetector):
    """
    Dense sliding-window instance segmentation with structured 4-D mask tensors.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: TensorMaskHead,
        head_in_features: List[str],
        anchor_generator: TensorMaskAnchorGenerator,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        min_anchor_size: float,
        focal_loss_alpha: float = 0.3,
        focal_loss_gamma: float = 3.0,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 6000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        nms_boxes: str = "regressed",
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone, head, head_in_features: see :class:`DenseDetector`; the head holds the
                mask branch, which has its own loss weights (MASK_LOSS_WEIGHT, POSITIVE_WEIGHT).
            anchor_generator: the sliding windows.
            box2box_transform: box regression parametrisation (weights 1.5, 1.5, 0.75, 0.75).
            num_classes (int): K.
            min_anchor_size (float): floor of the assignment's scale condition.
            focal_loss_alpha, focal_loss_gamma: FL* parameters.
            test_score_thresh, test_topk_candidates, test_nms_thresh, max_detections_per_image:
                inference parameters (the top-k is joint over all levels).
            nms_boxes (str): "regressed" or "mask": boxes used for NMS and reported.
            pixel_mean, pixel_std: input normalisation.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if nms_boxes not in ("regressed", "mask"):
            raise ValueError(
                f"MODEL.TENSOR_MASK.NMS_BOXES must be 'regressed' or 'mask', got {nms_boxes!r}"
            )
        if not head.box_head_on and not head.mask_on:
            raise ValueError(
                "MODEL.TENSOR_MASK.BOX_HEAD_ON=False and MODEL.MASK_ON=False leave nothing to "
                "predict"
            )
        if nms_boxes == "regressed" and not head.box_head_on:
            raise ValueError(
                "MODEL.TENSOR_MASK.BOX_HEAD_ON=False (mask-only TensorMask) requires "
                "MODEL.TENSOR_MASK.NMS_BOXES='mask': there are no regressed boxes"
            )
        if nms_boxes == "mask" and not head.mask_on:
            raise ValueError(
                "MODEL.TENSOR_MASK.NMS_BOXES='mask' requires MODEL.MASK_ON=True: the boxes are "
                "those of the mask windows"
            )
        if test_topk_candidates < 1:
            raise ValueError(
                f"MODEL.TENSOR_MASK.TOPK_CANDIDATES_TEST must be >= 1, got {test_topk_candidates}"
            )
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.num_classes = num_classes
        self.min_anchor_size = min_anchor_size
        # Loss parameters
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        # Inference parameters
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.nms_boxes = nms_boxes

    @classmethod
    def from_config(cls, cfg):
        check_tensormask_config(cfg)
        backbone = build_backbone(cfg)
        backbone_shape = backbone.output_shape()
        in_features = cfg.MODEL.TENSOR_MASK.IN_FEATURES
        missing = [f for f in in_features if f not in backbone_shape]
        if missing:
            raise ValueError(
                f"MODEL.TENSOR_MASK.IN_FEATURES {in_features}: {missing} not produced by the "
                f"backbone (outputs {list(backbone_shape)})"
            )
        feature_shapes = [backbone_shape[f] for f in in_features]
        # The windows first, so that SIZES is validated before the head derives its window
        # sides from it.
        anchor_generator = TensorMaskAnchorGenerator(cfg, feature_shapes)
        return {
            "backbone": backbone,
            "head": build_tensormask_head(cfg, feature_shapes),
            "head_in_features": in_features,
            "anchor_generator": anchor_generator,
            "box2box_transform": Box2BoxTransform(weights=cfg.MODEL.TENSOR_MASK.BBOX_REG_WEIGHTS),
            "num_classes": cfg.MODEL.TENSOR_MASK.NUM_CLASSES,
            "min_anchor_size": anchor_generator.min_anchor_size,
            # Loss parameters
            "focal_loss_alpha": cfg.MODEL.TENSOR_MASK.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.TENSOR_MASK.FOCAL_LOSS_GAMMA,
            # Inference parameters
            "test_score_thresh": cfg.MODEL.TENSOR_MASK.SCORE_THRESH_TEST,
            "test_topk_candidates": cfg.MODEL.TENSOR_MASK.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": cfg.MODEL.TENSOR_MASK.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "nms_boxes": cfg.MODEL.TENSOR_MASK.NMS_BOXES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def mask_on(self) -> bool:
        return self.head.mask_on

    @property
    def mask_branch(self) -> Optional[MaskBranch]:
        """The head's mask branch (None without masks)."""
        return self.head.mask_branch

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Older checkpoints (and the official ones) may carry the normalisation constants and the
        # cell anchors, which this model recomputes: drop them silently.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            if key[len(prefix) :].startswith(_STALE_KEYS):
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------------------------------- #
    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """
        See :meth:`DenseDetector.forward`. In inference, the output ``Instances`` have the fields
        ``pred_boxes``, ``scores``, ``pred_classes`` and (with masks) ``pred_masks`` (bool
        (D, height, width)), also when there is no detection. ``DenseDetector`` rescales the
        boxes; the mask windows are pasted here because they belong to the window boxes and have
        per-detection sizes, unlike the fixed-size ROI masks its post-processing pastes.
        """
        outputs = super().forward(batched_inputs)
        if self.training or not self.mask_on:
            return outputs
        processed = []
        for output, inputs in zip(outputs, batched_inputs):
            inst = output["instances"]
            in_h, in_w = inputs["image"].shape[-2:]
            out_h, out_w = inst.image_size
            masks = paste_mask_windows(
                inst.pred_mask_windows,
                inst.pred_window_boxes,
                (out_w / in_w, out_h / in_h),
                (out_h, out_w),
            )
            processed.append(
                {
                    "instances": Instances(
                        inst.image_size,
                        pred_boxes=inst.pred_boxes,
                        scores=inst.scores,
                        pred_classes=inst.pred_classes,
                        pred_masks=masks,
                    )
                }
            )
        return processed

    def _grid_windows(self, features: List[torch.Tensor]):
        grid_sizes = [tuple(x.shape[-2:]) for x in features]
        windows = cat(self.anchor_generator(grid_sizes, self.device), dim=0)  # (R, 4)
        return grid_sizes, windows

    # ---------------------------------------------------------------------------------------- #
    def forward_training(self, images: ImageList, features, predictions, gt_instances):
        """
        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_box_reg`` (with box head), ``loss_mask``
            (with masks).
        """
        pred_logits, pred_deltas = predictions
        grid_sizes, windows = self._grid_windows(features)
        targets = [
            assign_windows(
                inst.gt_boxes.tensor,
                inst.gt_classes,
                grid_sizes,
                self.anchor_generator.strides,
                self.anchor_generator.sizes,
                self.num_classes,
                self.min_anchor_size,
            )
            for inst in gt_instances
        ]
        num_pos = sum(t.pos_indices.numel() for t in targets)
        normalizer = max(1.0, float(num_pos))

        K = self.num_classes
        logits = cat([permute_to_N_HWA_K(x, K) for x in pred_logits], dim=1)  # (N, R, K)
        gt_labels = torch.stack([t.gt_labels for t in targets])  # (N, R)
        losses = {
            "loss_cls": classification_loss(
                logits.reshape(-1, K),
                gt_labels.reshape(-1),
                K,
                self.focal_loss_alpha,
                self.focal_loss_gamma,
                normalizer,
            )
        }
        if pred_deltas is not None:
            deltas = cat([permute_to_N_HWA_K(x, 4) for x in pred_deltas], dim=1)  # (N, R, 4)
            if num_pos == 0:
                losses["loss_box_reg"] = deltas.sum() * 0
            else:
                pred_pos = cat([deltas[i, t.pos_indices] for i, t in enumerate(targets)])
                gt_pos = cat(
                    [
                        self.box2box_transform.get_deltas(
                            windows[t.pos_indices], inst.gt_boxes.tensor[t.pos_gt]
                        )
                        for t, inst in zip(targets, gt_instances)
                    ]
                )
                losses["loss_box_reg"] = box_regression_loss(pred_pos, gt_pos, normalizer)
        if self.mask_on:
            positives = self._positive_windows(targets, windows, grid_sizes, normalizer)
            losses["loss_mask"] = self.mask_branch.losses(features, positives, gt_instances)
        return losses

    def _positive_windows(self, targets, windows, grid_sizes, normalizer) -> PositiveWindows:
        """The positives of all images, located on the grid, for the mask branch's loss."""
        pos_indices = cat([t.pos_indices for t in targets])
        return PositiveWindows(
            image_ids=cat([torch.full_like(t.pos_indices, i) for i, t in enumerate(targets)]),
            gt_index=cat([t.pos_gt for t in targets]),
            boxes=windows[pos_indices],
            locations=torch.stack(self.anchor_generator.locate(pos_indices, grid_sizes), dim=1),
            normalizer=normalizer,
        )

    # ---------------------------------------------------------------------------------------- #
    def forward_inference(self, images: ImageList, features, predictions):
        """
        Returns:
            list[Instances]: per image, at the network input resolution, ``pred_boxes``,
            ``scores``, ``pred_classes`` and, with masks, ``pred_window_boxes`` (Boxes) and
            ``pred_mask_windows`` (:class:`MaskWindows` of logits), pasted by :meth:`forward`.
        """
        pred_logits, pred_deltas = predictions
        grid_sizes, windows = self._grid_windows(features)
        K = self.num_classes
        logits = cat([permute_to_N_HWA_K(x, K) for x in pred_logits], dim=1)
        deltas = None
        if pred_deltas is not None:
            deltas = cat([permute_to_N_HWA_K(x, 4) for x in pred_deltas], dim=1)
        candidates = [
            self._candidates(
                image_size, logits[i], None if deltas is None else deltas[i], windows, grid_sizes
            )
            for i, image_size in enumerate(images.image_sizes)
        ]
        if self.nms_boxes == "mask":
            # Mask-bb NMS (paper §A.4) needs the masks of all candidates.
            self.mask_branch.predict(features, candidates)
        detections = [self._nms(c) for c in candidates]
        if self.mask_on and self.nms_boxes == "regressed":
            self.mask_branch.predict(features, detections)
        results = []
        for det in detections:
            result = Instances(det.image_size)
            result.pred_boxes = det.pred_boxes
            result.scores = det.scores
            result.pred_classes = det.pred_classes
            if self.mask_on:
                result.pred_window_boxes = det.pred_window_boxes
                result.pred_mask_windows = det.pred_mask_windows
            results.append(result)
        return results

    def _candidates(self, image_size, logits_i, deltas_i, windows, grid_sizes) -> Instances:
        """
        The top-scoring (window, class) pairs of one image: ``scores``, ``pred_classes``,
        ``pred_window_boxes``, ``window_locations`` (Tensor[C, 4]: level, row, column, window
        id) and, with regressed boxes, ``pred_boxes``.
        """
        K = self.num_classes
        # Score threshold, then one top-k over all levels jointly (official).
        scores = logits_i.sigmoid().flatten()
        candidates = torch.nonzero(scores > self.test_score_thresh).flatten()
        scores = scores[candidates]
        num_topk = min(self.test_topk_candidates, candidates.numel())
        # On CPU a partial top-k is much faster than a full sort of R*K scores.
        scores, order = scores.topk(num_topk, sorted=True)
        candidates = candidates[order]
        window_idx, classes = candidates // K, candidates % K
        window_boxes = windows[window_idx]
        result = Instances(image_size, scores=scores, pred_classes=classes)
        result.pred_window_boxes = Boxes(window_boxes)
        result.window_locations = torch.stack(
            self.anchor_generator.locate(window_idx, grid_sizes), dim=1
        )
        if self.nms_boxes == "regressed":
            boxes = self.box2box_transform.apply_deltas(deltas_i[window_idx], window_boxes)
            result.pred_boxes = Boxes(boxes)
        return result

    def _nms(self, candidates: Instances) -> Instances:
        """The candidates of one image that NMS keeps, at most ``max_detections_per_image``."""
        if self.nms_boxes == "mask":
            boxes = mask_window_boxes(
                candidates.pred_mask_windows.windows, candidates.pred_window_boxes.tensor
            )
            nonempty = Boxes(boxes).nonempty()
            candidates = candidates[nonempty]
            candidates.pred_boxes = Boxes(boxes[nonempty])
        keep = batched_nms(
            candidates.pred_boxes.tensor,
            candidates.scores,
            candidates.pred_classes,
            self.test_nms_thresh,
        )
        return candidates[keep[: self.max_detections_per_image]]
