"""
FCOS (Tian et al., 2019) as BlendMask's detector: dense per-location classification, box
regression and centerness, with AdelaiDet's target assignment, losses and post-processing.

Shape shorthand in this module:

    N: number of images in the minibatch
    L: number of FPN levels; Hi, Wi, si: size and stride of level i
    R: number of locations of one image over all levels (sum of Hi*Wi)
    C: number of foreground classes (the background label is C)
    P: number of positive locations in the minibatch
    D: channels of the box-tower features

Naming convention: ``pred_*`` are network outputs, ``gt_*`` ground truth; losses are
``loss_fcos_cls``, ``loss_fcos_loc`` and ``loss_fcos_ctr`` (``loss_fcos_iou`` with
MODEL.FCOS.BOX_QUALITY "iou"), AdelaiDet's keys.

Reused from detectron2: the point-to-box distances, fvcore's focal loss and (in
``fcos_postprocess``) ``batched_nms``; BlendMask, a ``DenseDetector``, runs the head and
transposes its outputs to (N, Hi*Wi, K) before calling :meth:`FCOS.losses` and
:meth:`FCOS.predict`.
"""

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Instances
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor, nn

from .fcos_head import FCOSHead
from .fcos_postprocess import distances_to_boxes, predict_instances
from .fcos_targets import (
    compute_ctrness_targets,
    level_size_ranges,
    match_locations,
)
from .losses import distance_box_ious, iou_loss, reduce_mean

__all__ = ["FCOS"]

CLS_NORMALIZERS = ("fg", "moving_fg", "all")
BOX_QUALITIES = ("ctrness", "iou")


class FCOS(nn.Module):
    """
    The FCOS part of BlendMask: its head (``fcos_head``, which BlendMask runs as its
    ``DenseDetector`` head), the labelling of locations and the losses (:meth:`losses`, which
    also return the positive locations and the loss normaliser the blender trains with), and the
    post-NMS detections (:meth:`predict`).

    Not a detectron2 proposal generator (AdelaiDet registered it as one): a proposal generator
    runs on the backbone features and returns ``(proposals, losses)``, but BlendMask also needs the
    head's box-tower features (its top layer reads them), the positive locations and the loss
    normaliser, and runs the head itself as a ``DenseDetector``. BlendMask builds it directly
    (MODEL.PROPOSAL_GENERATOR.NAME is not read); it is BlendMask's ``proposal_generator``
    attribute only because AdelaiDet's checkpoints name its parameters that way.
    """

    @configurable
    def __init__(
        self,
        *,
        head: nn.Module,
        in_features: List[str],
        strides: List[int],
        num_classes: int,
        sizes_of_interest: List[float],
        center_sample: bool = True,
        pos_radius: float = 1.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        loc_loss_type: str = "giou",
        box_quality: str = "ctrness",
        loss_normalizer_cls: str = "fg",
        loss_weight_cls: float = 1.0,
        thresh_with_ctr: bool = False,
        one_class_per_location: bool = False,
        score_thresh_train: float = 0.05,
        score_thresh_test: float = 0.05,
        pre_nms_topk_train: int = 1000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_train: int = 100,
        post_nms_topk_test: int = 100,
        nms_thresh: float = 0.6,
    ):
        """
        Args:
            head: :class:`FCOSHead` (or any module with the same forward contract).
            in_features: names of the L backbone features the head runs on.
            strides: L strides, matching the backbone.
            num_classes: C.
            sizes_of_interest: L-1 boundaries of the per-level size ranges.
            center_sample, pos_radius: centre sampling and its radius in strides.
            focal_loss_alpha, focal_loss_gamma: sigmoid focal loss parameters.
            loc_loss_type: "iou", "linear_iou" or "giou".
            box_quality: what the quality branch learns: "ctrness" (centerness targets; the IoU
                loss is weighted by them) or "iou" (the detached IoU of the predicted box; the
                IoU loss is unweighted). Either way the loss normaliser returned for the
                blender is the sum of centerness targets.
            loss_normalizer_cls: "fg", "moving_fg" or "all" (see config).
            loss_weight_cls: weight of the classification loss.
            thresh_with_ctr: threshold cls prob x centerness instead of cls prob.
            one_class_per_location: at inference a location yields only its best class
                (AdelaiDet: every class above the score threshold).
            score_thresh_*, pre_nms_topk_*, post_nms_topk_*, nms_thresh: post-processing
                (``*_train`` apply when :meth:`predict` is called in training mode; BlendMask
                does not, as AdelaiDet's did only with MODEL.FCOS.YIELD_PROPOSAL).
        """
        super().__init__()
        if len(strides) != len(in_features):
            raise ValueError(
                f"MODEL.FCOS.FPN_STRIDES {strides} and IN_FEATURES {in_features} differ in length"
            )
        if len(sizes_of_interest) != len(in_features) - 1:
            raise ValueError(
                f"MODEL.FCOS.SIZES_OF_INTEREST needs {len(in_features) - 1} entries (one fewer "
                f"than IN_FEATURES {in_features}), got {sizes_of_interest}"
            )
        if box_quality not in BOX_QUALITIES:
            raise ValueError(
                f"MODEL.FCOS.BOX_QUALITY must be one of {BOX_QUALITIES}, got {box_quality!r}"
            )
        if loss_normalizer_cls not in CLS_NORMALIZERS:
            raise ValueError(
                f"MODEL.FCOS.LOSS_NORMALIZER_CLS must be one of {CLS_NORMALIZERS}, "
                f"got {loss_normalizer_cls!r}"
            )
        self.fcos_head = head
        self.in_features = list(in_features)
        self.strides = list(strides)
        self.num_classes = num_classes
        self.size_ranges = level_size_ranges(sizes_of_interest)
        # Loss parameters
        self.center_sample_radius = pos_radius if center_sample else None
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.loc_loss_type = loc_loss_type
        self.box_quality = box_quality
        self.loss_normalizer_cls = loss_normalizer_cls
        self.loss_weight_cls = loss_weight_cls
        if loss_normalizer_cls == "moving_fg":
            # The EMA of the number of positives; AdelaiDet starts it at 100. A buffer, so that
            # checkpoints keep it and --resume continues it (AdelaiDet keeps a float: its
            # checkpoints lack the key, and it restarts at 100). Only this setting has it, so the
            # state-dict names of the other settings stay AdelaiDet's.
            self.register_buffer("moving_num_pos", torch.tensor(100.0))
        # Inference parameters
        self.thresh_with_ctr = thresh_with_ctr
        self.one_class_per_location = one_class_per_location
        self.score_thresh_train = score_thresh_train
        self.score_thresh_test = score_thresh_test
        self.pre_nms_topk_train = pre_nms_topk_train
        self.pre_nms_topk_test = pre_nms_topk_test
        self.post_nms_topk_train = post_nms_topk_train
        self.post_nms_topk_test = post_nms_topk_test
        self.nms_thresh = nms_thresh

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        fcos = cfg.MODEL.FCOS
        missing = [f for f in fcos.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.FCOS.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}"
            )
        shapes = [input_shape[f] for f in fcos.IN_FEATURES]
        for f, shape, stride in zip(fcos.IN_FEATURES, shapes, fcos.FPN_STRIDES):
            if shape.stride is not None and shape.stride != stride:
                raise ValueError(
                    f"MODEL.FCOS.FPN_STRIDES gives stride {stride} for '{f}' but the backbone "
                    f"outputs it at stride {shape.stride}"
                )
        return {
            "head": FCOSHead(cfg, shapes),
            "in_features": fcos.IN_FEATURES,
            "strides": fcos.FPN_STRIDES,
            "num_classes": fcos.NUM_CLASSES,
            # Target assignment
            "sizes_of_interest": fcos.SIZES_OF_INTEREST,
            "center_sample": fcos.CENTER_SAMPLE,
            "pos_radius": fcos.POS_RADIUS,
            # Loss parameters
            "focal_loss_alpha": fcos.LOSS_ALPHA,
            "focal_loss_gamma": fcos.LOSS_GAMMA,
            "loc_loss_type": fcos.LOC_LOSS_TYPE,
            "box_quality": fcos.BOX_QUALITY,
            "loss_normalizer_cls": fcos.LOSS_NORMALIZER_CLS,
            "loss_weight_cls": fcos.LOSS_WEIGHT_CLS,
            # Inference parameters
            "thresh_with_ctr": fcos.THRESH_WITH_CTR,
            "one_class_per_location": fcos.ONE_CLASS_PER_LOCATION,
            "score_thresh_train": fcos.INFERENCE_TH_TRAIN,
            "score_thresh_test": fcos.INFERENCE_TH_TEST,
            "pre_nms_topk_train": fcos.PRE_NMS_TOPK_TRAIN,
            "pre_nms_topk_test": fcos.PRE_NMS_TOPK_TEST,
            "post_nms_topk_train": fcos.POST_NMS_TOPK_TRAIN,
            "post_nms_topk_test": fcos.POST_NMS_TOPK_TEST,
            "nms_thresh": fcos.NMS_TH,
        }

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def label_locations(self, locations: List[Tensor], gt_instances: List[Instances]):
        """
        Args:
            locations: L tensors (Hi*Wi, 2).
            gt_instances: N Instances with gt_boxes, gt_classes.

        Returns:
            gt_labels: (N, R) long in [0, C], C = background.
            gt_reg_targets: (N, R, 4) (l*, t*, r*, b*) in units of the location's stride.
            gt_inds: (N, R) long, matched index into the concatenation of all images' gts, -1
                for background.
            level_of: (R,) long level index of each location.
        """
        all_locations = torch.cat(locations, dim=0)
        device = all_locations.device
        level_of = torch.cat(
            [
                torch.full((len(loc),), i, dtype=torch.long, device=device)
                for i, loc in enumerate(locations)
            ]
        )
        strides = torch.tensor(self.strides, dtype=torch.float32, device=device)[level_of]
        ranges = torch.tensor(self.size_ranges, dtype=torch.float32, device=device)[level_of]

        gt_labels, gt_reg_targets, gt_inds = [], [], []
        offset = 0
        for gt_per_image in gt_instances:
            matched, ltrb = match_locations(
                all_locations,
                strides,
                ranges,
                gt_per_image.gt_boxes.tensor,
                self.center_sample_radius,
            )
            is_fg = matched >= 0
            labels = torch.full_like(matched, self.num_classes)
            labels[is_fg] = gt_per_image.gt_classes[matched[is_fg]]
            gt_labels.append(labels)
            gt_reg_targets.append(ltrb / strides[:, None])
            gt_inds.append(torch.where(is_fg, matched + offset, matched))
            offset += len(gt_per_image)
        return torch.stack(gt_labels), torch.stack(gt_reg_targets), torch.stack(gt_inds), level_of

    def losses(
        self,
        locations: List[Tensor],
        pred_logits: List[Tensor],
        pred_deltas: List[Tensor],
        pred_ctrness: List[Tensor],
        gt_instances: List[Instances],
    ):
        """
        FCOS losses (spec: focal cls loss / #positives; with box quality "ctrness",
        centerness-weighted IoU loss / sum of centerness targets and centerness BCE / #positives;
        with "iou", IoU loss / #positives and BCE against the detached IoU of each positive's
        predicted box / #positives).

        Args:
            locations: L tensors (Hi*Wi, 2), see :func:`fcos_targets.compute_locations`.
            pred_logits, pred_deltas, pred_ctrness: L tensors (N, Hi*Wi, C | 4 | 1), the head's
                outputs transposed as ``DenseDetector._transpose_dense_predictions`` does.
            gt_instances: N Instances with ``gt_boxes`` and ``gt_classes``.

        Returns:
            positives: an :class:`Instances` over the whole batch with one entry per positive
                location: ``im_inds`` (ascending), ``fpn_levels`` (long), ``locations`` (P, 2),
                ``labels``, ``gt_inds`` (index into the concatenation of all images'
                gt_instances), ``reg_targets`` (P, 4) in strides, ``gt_ctrs`` (P,) centerness
                targets, ``box_preds`` (P, 4) the predicted XYXY boxes (detached).
            loss_denorm: the scalar sum of gt_ctrs (averaged over processes), which also
                normalises BlendMask's mask loss.
            losses: "loss_fcos_cls", "loss_fcos_loc" and "loss_fcos_ctr" (box quality "ctrness")
                or "loss_fcos_iou" (box quality "iou").
        """
        gt_labels, gt_reg_targets, gt_inds, level_of = self.label_locations(locations, gt_instances)
        # (N, R, K) like the targets: levels are concatenated per image.
        pred_logits = torch.cat(pred_logits, dim=1)
        pred_deltas = torch.cat(pred_deltas, dim=1)
        pred_ctrness = torch.cat(pred_ctrness, dim=1).squeeze(2)

        pos_mask = gt_labels != self.num_classes  # (N, R)
        num_pos = pos_mask.sum()
        num_pos_avg = max(reduce_mean(num_pos.float()).item(), 1.0)
        if self.loss_normalizer_cls == "fg":
            cls_normalizer = num_pos_avg
        elif self.loss_normalizer_cls == "moving_fg":
            # The EMA damps the per-batch fluctuation of #positives at small batch sizes. The
            # update is DenseDetector._ema_update's (momentum 0.9), which BlendMask does not call:
            # it keeps the average as a plain attribute of the detector, which checkpoints do not
            # save, while this buffer is saved (as proposal_generator.moving_num_pos).
            self.moving_num_pos.mul_(0.9).add_(0.1 * num_pos_avg)
            cls_normalizer = float(self.moving_num_pos)
        else:
            cls_normalizer = float(pos_mask.numel())

        # One-hot without the background column: background rows are all-zero targets.
        cls_targets = F.one_hot(gt_labels, self.num_classes + 1)[..., :-1].to(pred_logits.dtype)
        loss_cls = sigmoid_focal_loss_jit(
            pred_logits,
            cls_targets,
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        loss_cls = self.loss_weight_cls * loss_cls / cls_normalizer

        im_inds, loc_inds = torch.nonzero(pos_mask, as_tuple=True)
        reg_targets = gt_reg_targets[im_inds, loc_inds]
        ctrness_targets = compute_ctrness_targets(reg_targets)
        # Reduced on every process, positives or not, so distributed training cannot deadlock.
        loss_denorm = reduce_mean(ctrness_targets.sum().detach()).clamp(min=1e-6)
        quality_key = "loss_fcos_ctr" if self.box_quality == "ctrness" else "loss_fcos_iou"
        pos_deltas = pred_deltas[im_inds, loc_inds]
        if num_pos > 0:
            if self.box_quality == "ctrness":
                loss_loc = (
                    iou_loss(pos_deltas, reg_targets, ctrness_targets, self.loc_loss_type)
                    / loss_denorm
                )
                quality_targets = ctrness_targets
            else:
                loss_loc = iou_loss(pos_deltas, reg_targets, None, self.loc_loss_type) / num_pos_avg
                quality_targets = distance_box_ious(pos_deltas.detach().float(), reg_targets)
            loss_quality = (
                F.binary_cross_entropy_with_logits(
                    pred_ctrness[im_inds, loc_inds], quality_targets, reduction="sum"
                )
                / num_pos_avg
            )
        else:
            # Zero, but connected to the graph so that every parameter gets a gradient.
            loss_loc = pred_deltas.sum() * 0
            loss_quality = pred_ctrness.sum() * 0

        all_locations = torch.cat(locations, dim=0)
        pos_locations = all_locations[loc_inds]
        pos_strides = pos_locations.new_tensor(self.strides)[level_of[loc_inds]][:, None]
        positives = Instances(
            (0, 0),
            im_inds=im_inds,
            fpn_levels=level_of[loc_inds],
            locations=pos_locations,
            labels=gt_labels[im_inds, loc_inds],
            gt_inds=gt_inds[im_inds, loc_inds],
            reg_targets=reg_targets,
            gt_ctrs=ctrness_targets,
            # The box each positive predicts now, as inference would decode it; detached, so that
            # the blender can train on it (MODEL.BLENDMASK.TRAIN_BOXES) without moving it.
            box_preds=distances_to_boxes(pos_locations, pos_deltas.detach().float() * pos_strides),
        )
        losses = {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, quality_key: loss_quality}
        return positives, loss_denorm, losses

    # ------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------
    def predict(
        self,
        locations: List[Tensor],
        pred_logits: List[Tensor],
        pred_deltas: List[Tensor],
        pred_ctrness: List[Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """
        Post-NMS detections per image, see :func:`fcos_postprocess.predict_instances`.

        Args:
            locations, pred_logits, pred_deltas, pred_ctrness: as for :meth:`losses`.
            image_sizes: N (h, w) of the unpadded inputs.

        Returns:
            N Instances with ``pred_boxes`` (unclipped, input-image pixels), ``scores``,
            ``pred_classes``, ``locations`` and ``fpn_levels``, sorted by decreasing score.
        """
        # Chosen from self.training at each call (AdelaiDet stored them on self as a side effect).
        if self.training:
            score_thresh, pre_nms_topk = self.score_thresh_train, self.pre_nms_topk_train
            post_nms_topk = self.post_nms_topk_train
        else:
            score_thresh, pre_nms_topk = self.score_thresh_test, self.pre_nms_topk_test
            post_nms_topk = self.post_nms_topk_test
        return predict_instances(
            locations,
            self.strides,
            pred_logits,
            pred_deltas,
            pred_ctrness,
            image_sizes,
            score_thresh=score_thresh,
            pre_nms_topk=pre_nms_topk,
            post_nms_topk=post_nms_topk,
            nms_thresh=self.nms_thresh,
            thresh_with_ctr=self.thresh_with_ctr,
            one_class_per_location=self.one_class_per_location,
        )
