"""
The TensorMask meta-architecture (Chen et al. 2019), built on detectron2's ``DenseDetector``.

Shape shorthand / naming:
    N: images, L: levels, R: windows of an image (all levels), K: classes, P: positive windows,
    D: detections of an image, S_out: side of a natural mask window.
    ``pred_*``: network outputs, ``gt_*``: targets; ``_i`` / ``_per_image``: one image.

Pieces: the head (``TensorMaskHead`` and its mask variants, ``build_tensormask_head``),
``TensorMaskAnchorGenerator`` (sliding windows), ``assign_windows`` (label assignment), ``losses``
and ``postprocess``. Mask windows are computed densely by the head (official) or only where
needed (``SPARSE_WINDOWS``, default): the positive windows in training, the kept detections at
inference, by the head's ``mask_windows`` (one call per level).
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
from .assignment import assign_windows
from .head import TensorMaskHead, build_tensormask_head
from .losses import box_regression_loss, classification_loss, mask_loss
from .postprocess import MaskWindows, mask_window_boxes, paste_mask_windows
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
        mask_loss_weight: float = 2.0,
        mask_pos_weight: float = 1.5,
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
            backbone, head, head_in_features: see :class:`DenseDetector`.
            anchor_generator: the sliding windows.
            box2box_transform: box regression parametrisation (weights 1.5, 1.5, 0.75, 0.75).
            num_classes (int): K.
            min_anchor_size (float): floor of the assignment's scale condition.
            focal_loss_alpha, focal_loss_gamma: FL* parameters.
            mask_loss_weight (float): weight of each positive window's mean mask BCE.
            mask_pos_weight (float): BCE weight of foreground pixels.
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
        self.mask_loss_weight = mask_loss_weight
        self.mask_pos_weight = mask_pos_weight
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
            "mask_loss_weight": cfg.MODEL.TENSOR_MASK.MASK_LOSS_WEIGHT,
            "mask_pos_weight": cfg.MODEL.TENSOR_MASK.POSITIVE_WEIGHT,
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
        pred_logits, pred_deltas, pred_masks = predictions
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
            losses["loss_mask"] = self._mask_losses(
                features, pred_masks, targets, gt_instances, windows, grid_sizes, normalizer
            )
        return losses

    def _mask_losses(
        self, features, pred_masks, targets, gt_instances, windows, grid_sizes, normalizer
    ):
        image_ids = cat([torch.full_like(t.pos_indices, i) for i, t in enumerate(targets)])
        pos_indices = cat([t.pos_indices for t in targets])
        pos_gt = cat([t.pos_gt for t in targets])
        # Zero-weighted sum over the mask branch keeps every parameter in the graph when a window
        # size has no positive (needed by DistributedDataParallel).
        loss = sum(p.sum() for n, p in self.head.named_parameters() if n.startswith("mask_")) * 0
        if pos_indices.numel() == 0:
            return loss
        levels, ys, xs, anchor_ids = self.anchor_generator.locate(pos_indices, grid_sizes)
        mask_features = self.head.mask_features(features) if pred_masks is None else None
        for level, at_level in self._per_level(levels):
            pred_windows = self._level_windows(
                mask_features,
                pred_masks,
                level,
                image_ids[at_level],
                ys[at_level],
                xs[at_level],
                anchor_ids[at_level],
            )
            for a, pred in enumerate(pred_windows):
                if pred is None:
                    continue
                sel = at_level[anchor_ids[at_level] == a]
                gt = self._gt_mask_windows(
                    gt_instances,
                    image_ids[sel],
                    pos_gt[sel],
                    windows[pos_indices[sel]],
                    self.head.window_side(level, a),
                )
                loss = loss + mask_loss(
                    pred,
                    gt.to(pred.device),
                    self.mask_loss_weight,
                    self.mask_pos_weight,
                    normalizer,
                )
        return loss

    @staticmethod
    def _per_level(levels: torch.Tensor):
        """(level, indices of the entries of ``levels`` equal to it) for every level present."""
        order = torch.argsort(levels, stable=True)
        counts = torch.bincount(levels).tolist()
        return [
            (level, index)
            for level, index in enumerate(torch.split(order, counts))
            if counts[level] > 0
        ]

    @staticmethod
    def _gt_mask_windows(gt_instances, image_ids, gt_index, window_boxes, side):
        """
        Ground-truth masks of positive windows (``image_ids`` non-decreasing): each matched
        object's mask cropped to its window box and resampled to side x side
        (Tensor[P, side, side], bool).
        """
        gt = []
        for i, count in enumerate(torch.bincount(image_ids).tolist()):
            if count == 0:
                continue
            mine = torch.nonzero(image_ids == i).flatten()
            gt_masks = gt_instances[i].gt_masks[gt_index[mine]]
            gt.append(gt_masks.crop_and_resize(window_boxes[mine], side))
        return cat(gt)

    def _level_windows(self, mask_features, pred_masks, level, image_ids, ys, xs, anchor_ids):
        """
        Natural window logits of requested positions of one level, from the dense head outputs
        or computed by the head: list over window ids of Tensor[n_a, S_out, S_out] or None.
        """
        if pred_masks is None:
            return self.head.mask_windows(mask_features, level, image_ids, ys, xs, anchor_ids)
        out: List[Optional[torch.Tensor]] = []
        for a, dense in enumerate(pred_masks[level]):
            sel = anchor_ids == a
            if not bool(sel.any()):
                out.append(None)
                continue
            side = self.head.window_side(level, a)
            out.append(dense[image_ids[sel], :, ys[sel], xs[sel]].reshape(-1, side, side))
        return out

    def _windows_at(self, mask_features, pred_masks, image: int, window_idx, grid_sizes):
        """Natural window logits of the windows ``window_idx`` of one image, as a list."""
        unique, inverse = torch.unique(window_idx, return_inverse=True)
        out: List[Optional[torch.Tensor]] = [None] * unique.numel()
        if unique.numel() == 0:
            return []
        levels, ys, xs, anchor_ids = self.anchor_generator.locate(unique, grid_sizes)
        for level, at_level in self._per_level(levels):
            per_anchor = self._level_windows(
                mask_features,
                pred_masks,
                level,
                torch.full_like(at_level, image),
                ys[at_level],
                xs[at_level],
                anchor_ids[at_level],
            )
            for a, pred in enumerate(per_anchor):
                if pred is None:
                    continue
                for j, window in zip(at_level[anchor_ids[at_level] == a].tolist(), pred):
                    out[j] = window
        return [out[j] for j in inverse.tolist()]

    # ---------------------------------------------------------------------------------------- #
    def forward_inference(self, images: ImageList, features, predictions):
        """
        Returns:
            list[Instances]: per image, at the network input resolution, ``pred_boxes``,
            ``scores``, ``pred_classes`` and, with masks, ``pred_window_boxes`` (Boxes) and
            ``pred_mask_windows`` (:class:`MaskWindows` of logits), pasted by :meth:`forward`.
        """
        pred_logits, pred_deltas, pred_masks = predictions
        grid_sizes, windows = self._grid_windows(features)
        K = self.num_classes
        logits = cat([permute_to_N_HWA_K(x, K) for x in pred_logits], dim=1)
        deltas = None
        if pred_deltas is not None:
            deltas = cat([permute_to_N_HWA_K(x, 4) for x in pred_deltas], dim=1)
        mask_features = None
        if self.mask_on and pred_masks is None:
            mask_features = self.head.mask_features(features)
        return [
            self._inference_single_image(
                i,
                image_size,
                mask_features,
                logits[i],
                None if deltas is None else deltas[i],
                pred_masks,
                windows,
                grid_sizes,
            )
            for i, image_size in enumerate(images.image_sizes)
        ]

    def _inference_single_image(
        self, image, image_size, mask_features, logits_i, deltas_i, pred_masks, windows, grid_sizes
    ) -> Instances:
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

        mask_windows = None
        if self.nms_boxes == "regressed":
            boxes = self.box2box_transform.apply_deltas(deltas_i[window_idx], window_boxes)
        else:
            # Mask-bb NMS (paper §A.4) needs the masks of all candidates.
            mask_windows = self._windows_at(
                mask_features, pred_masks, image, window_idx, grid_sizes
            )
            boxes = mask_window_boxes(mask_windows, window_boxes)
            nonempty = Boxes(boxes).nonempty()
            boxes, scores, classes = boxes[nonempty], scores[nonempty], classes[nonempty]
            window_idx, window_boxes = window_idx[nonempty], window_boxes[nonempty]
            mask_windows = [w for w, k in zip(mask_windows, nonempty.tolist()) if k]
        keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)
        keep = keep[: self.max_detections_per_image]

        result = Instances(image_size)
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        if self.mask_on:
            if mask_windows is None:
                kept_windows = self._windows_at(
                    mask_features, pred_masks, image, window_idx[keep], grid_sizes
                )
            else:
                kept_windows = [mask_windows[j] for j in keep.tolist()]
            result.pred_window_boxes = Boxes(window_boxes[keep])
            result.pred_mask_windows = MaskWindows(kept_windows)
        return result
