"""
BlendMask (Chen et al., CVPR 2020, arXiv:2001.00309): an FCOS detector whose box tower also
predicts, through one conv (the "top layer"), K attention maps of M x M per location; a bottom
module predicts K bases; the blender crops the bases with each box and mixes them with the
attentions into an R x R mask.

Shape shorthand in this module:

    N: number of images in the minibatch
    K: number of bases; M: attention side; R: mask side
    Hi, Wi: size of FCOS level i
    P: number of instances (positive locations in training, detections in inference)
"""

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList, Instances
from torch import Tensor, nn

from .basis_module import build_basis_module
from .blender import Blender
from .fcos import FCOS
from .fcos_targets import compute_locations, locations_to_cells
from .sparse_conv import conv2d_at_cells

__all__ = ["BlendMask"]


@META_ARCH_REGISTRY.register()
class BlendMask(DenseDetector):
    """
    Inputs: detectron2's list of dicts with "image" (C, H, W) and, in training, "instances"
    (gt_boxes, gt_classes, gt_masks) and, with the basis module's auxiliary loss, "basis_sem"
    (H, W) long. Training returns the loss dict; inference returns
    ``[{"instances": Instances}]`` with pred_boxes, scores, pred_classes, locations, fpn_levels,
    top_feat and pred_masks (bool, output size).

    Training or inference is chosen by ``self.training`` alone: inputs that carry "instances" are
    fine in eval mode (AdelaiDet's blender took its training branch on them and crashed).

    A ``DenseDetector`` whose head is FCOS's (``fcos_head``): from it come the pixel statistics,
    :meth:`preprocess_image`, the head run on ``head_in_features``, the split into
    :meth:`forward_training` and :meth:`forward_inference`, and the transpose of the head's
    outputs. Its decoding and EMA helpers are not used (see ``fcos_postprocess.decode_level`` and
    ``FCOS.losses``).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        fcos: FCOS,
        head_in_features: Sequence[str],
        strides: Sequence[int],
        basis_module: nn.Module,
        blender: Blender,
        num_bases: int,
        attn_size: int,
        top_in_channels: int,
        pixel_mean,
        pixel_std,
        visualize: bool = False,
    ):
        """
        Args:
            backbone: a detectron2 backbone.
            fcos: the :class:`FCOS` module; its ``fcos_head`` is the dense head.
            head_in_features: the L backbone features the head runs on.
            strides: their L strides (the locations, and the cells of the top layer).
            basis_module: a BASIS_MODULE_REGISTRY module.
            blender: a :class:`Blender`.
            num_bases: K.
            attn_size: M; the top layer predicts K*M*M channels per location.
            top_in_channels: channels of FCOS's box-tower features.
            pixel_mean, pixel_std: per-channel normalisation of the input images.
            visualize: add "bases" (and "sem_thing_seg") to the inference outputs.
        """
        # The pixel statistics become DenseDetector's non-persistent buffers: AdelaiDet
        # checkpoints have no such entries, and the values come from the config anyway.
        super().__init__(
            backbone,
            fcos.fcos_head,
            list(head_in_features),
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
        if self.pixel_mean.shape != self.pixel_std.shape:
            raise ValueError(
                f"MODEL.PIXEL_MEAN {tuple(pixel_mean)} and MODEL.PIXEL_STD {tuple(pixel_std)} "
                "have different lengths"
            )
        if len(strides) != len(self.head_in_features):
            raise ValueError(
                f"{len(strides)} strides {list(strides)} for {len(self.head_in_features)} head "
                f"features {self.head_in_features}"
            )
        # Registration order fixes the state-dict order (AdelaiDet's): backbone,
        # proposal_generator, basis_module, top_layer. DenseDetector registers its head as
        # "head"; AdelaiDet's checkpoints have it at "proposal_generator.fcos_head", so it is
        # registered there only (a module under two names would be saved twice), and ``head``
        # is a property. The blender holds no state.
        del self.head
        self.proposal_generator = fcos
        self.strides = list(strides)
        self.blender = blender
        self.basis_module = basis_module
        self.top_layer = nn.Conv2d(
            top_in_channels, num_bases * attn_size * attn_size, 3, stride=1, padding=1
        )
        nn.init.normal_(self.top_layer.weight, std=0.01)
        nn.init.constant_(self.top_layer.bias, 0)
        self.visualize = visualize

    @property
    def head(self) -> nn.Module:
        """DenseDetector's head: FCOS's, ``proposal_generator.fcos_head``."""
        return self.proposal_generator.fcos_head

    @classmethod
    def from_config(cls, cfg):
        if not cfg.MODEL.MASK_ON:
            raise ValueError("BlendMask is an instance segmenter: set MODEL.MASK_ON=True")
        if cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
            raise NotImplementedError(
                "Panoptic BlendMask is not implemented: set MODEL.PANOPTIC_FPN.COMBINE.ENABLED="
                "False (Base-BlendMask.yaml does)"
            )
        backbone = build_backbone(cfg)
        input_shape = backbone.output_shape()
        # Built directly, not by build_proposal_generator: FCOS is not a proposal generator (see
        # its docstring); MODEL.PROPOSAL_GENERATOR.NAME ("FCOS" in AdelaiDet's configs) is unread.
        fcos = FCOS(cfg, input_shape)
        basis_module = build_basis_module(cfg, input_shape)
        top_in_channels = {input_shape[f].channels for f in cfg.MODEL.FCOS.IN_FEATURES}
        return {
            "backbone": backbone,
            "fcos": fcos,
            "head_in_features": cfg.MODEL.FCOS.IN_FEATURES,
            "strides": cfg.MODEL.FCOS.FPN_STRIDES,
            "basis_module": basis_module,
            "blender": Blender(cfg),
            # Top layer (attentions)
            "num_bases": cfg.MODEL.BASIS_MODULE.NUM_BASES,
            "attn_size": cfg.MODEL.BLENDMASK.ATTN_SIZE,
            "top_in_channels": top_in_channels.pop(),
            # Input normalisation
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "visualize": cfg.MODEL.BLENDMASK.VISUALIZE,
        }

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """
        DenseDetector's ``forward`` (preprocess, backbone, head on ``head_in_features``, then
        :meth:`forward_training` or :meth:`forward_inference`), with what BlendMask adds and
        DenseDetector's cannot carry: the basis module, which reads backbone features of its own
        and, in training, each input's "basis_sem" map; and, in inference, the masks pasted at
        the output size after ``detector_postprocess``, and the visualisation maps.
        """
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.training:
            gt_instances = self._training_instances(batched_inputs)
            sem_targets = self._semantic_targets(batched_inputs)
            # The basis module runs before the head, as in AdelaiDet, so that the backward pass
            # sums the two branches' gradients into the backbone features in AdelaiDet's order
            # (float sums depend on it).
            basis_out, basis_losses = self.basis_module(features, sem_targets)
            head_features, predictions = self._run_head(features)
            losses = self.forward_training(
                images, head_features, predictions, gt_instances, basis_out["bases"]
            )
            return {**basis_losses, **losses}
        with torch.no_grad():
            basis_out, _ = self.basis_module(features)
            head_features, predictions = self._run_head(features)
            results = self.forward_inference(images, head_features, predictions, basis_out["bases"])
            return self._postprocess(results, batched_inputs, images.image_sizes, basis_out)

    def _run_head(self, features: Dict[str, Tensor]):
        """The head's L inputs (N, D, Hi, Wi) and outputs (see :meth:`forward_training`)."""
        head_features = [features[f] for f in self.head_in_features]
        return head_features, self.head(head_features)

    def _training_instances(self, batched_inputs: List[Dict]) -> List[Instances]:
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("BlendMask training needs 'instances' in every input dict")
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        for i, gt in enumerate(gt_instances):
            if len(gt) > 0 and not gt.has("gt_masks"):
                raise ValueError(
                    f"Training input {i} has instances without 'gt_masks' "
                    "(the dataset mapper needs MODEL.MASK_ON=True and mask annotations)"
                )
        return gt_instances

    def _semantic_targets(self, batched_inputs: List[Dict]) -> Optional[Tensor]:
        """(N, H, W) long "basis_sem" maps padded with 0 (background) like the images."""
        if any("basis_sem" not in x for x in batched_inputs):
            return None
        maps = [x["basis_sem"].to(self.device) for x in batched_inputs]
        return ImageList.from_tensors(maps, self.backbone.size_divisibility, pad_value=0).tensor

    def _dense_inputs(self, features: List[Tensor], predictions: Sequence[List[Tensor]]):
        """
        FCOS's inputs: the L locations (Hi*Wi, 2), and the head's logits, deltas and
        centerness, each L tensors (N, Hi*Wi, C | 4 | 1).
        """
        # One prediction per location: K is each output's channel count.
        dims = [pred[0].shape[1] for pred in predictions[:3]]
        return (
            compute_locations(features, self.strides),
            *self._transpose_dense_predictions(predictions[:3], dims),
        )

    def _attentions(self, box_features: List[Tensor], instances, im_inds: Tensor) -> Tensor:
        """
        The top layer's output (P, K*M*M) at each instance's location. Only these P outputs are
        computed (see ``sparse_conv``); the values equal the dense conv's.
        """
        rows, cols = locations_to_cells(instances.locations, instances.fpn_levels, self.strides)
        return conv2d_at_cells(
            self.top_layer, box_features, instances.fpn_levels, im_inds, rows, cols
        )

    def forward_training(
        self,
        images: ImageList,
        features: List[Tensor],
        predictions: Sequence[List[Tensor]],
        gt_instances: List[Instances],
        bases: List[Tensor],
    ) -> Dict[str, Tensor]:
        """
        Args:
            images: the padded batch.
            features: the head's L inputs (N, D, Hi, Wi).
            predictions: the head's outputs: logits, deltas, centerness and box-tower features,
                each L tensors (N, C | 4 | 1 | D, Hi, Wi).
            gt_instances: N Instances with gt_boxes, gt_classes and gt_masks.
            bases: the basis module's [(N, K, H/4, W/4)].

        Returns:
            FCOS's and the blender's losses.
        """
        positives, loss_denorm, fcos_losses = self.proposal_generator.losses(
            *self._dense_inputs(features, predictions), gt_instances
        )
        attns = self._attentions(predictions[3], positives, positives.im_inds)
        mask_losses = self.blender.losses(bases, attns, positives, gt_instances, loss_denorm)
        return {**fcos_losses, **mask_losses}

    @torch.no_grad()
    def forward_inference(
        self,
        images: ImageList,
        features: List[Tensor],
        predictions: Sequence[List[Tensor]],
        bases: List[Tensor],
    ) -> List[Instances]:
        """
        Args:
            images, features, predictions, bases: as for :meth:`forward_training`.

        Returns:
            N Instances at the input size, sorted by decreasing score: pred_boxes (clipped to
            the image), scores, pred_classes, locations, fpn_levels, top_feat (n, K*M*M) and
            mask_probs (n, 1, R, R), the masks on the boxes' crops (see ``Blender.paste``).
        """
        locations, *dense = self._dense_inputs(features, predictions)
        detections = self.proposal_generator.predict(locations, *dense, images.image_sizes)
        for img_idx, p in enumerate(detections):
            # Attentions only for the detections kept after NMS (AdelaiDet computes them at
            # every location and carries them through NMS).
            im_inds = torch.full_like(p.fpn_levels, img_idx)
            p.top_feat = self._attentions(predictions[3], p, im_inds)
            # Clipped to the image, as detector_postprocess clips the output boxes: the blender
            # must crop with the boxes its masks are pasted into, or a box that crosses the
            # border gets its mask squeezed into the clipped box.
            p.pred_boxes.clip(p.image_size)
        return self.blender.predict(bases, detections)

    def _postprocess(self, results: List[Instances], batched_inputs, image_sizes, basis_out):
        """The output dicts: ``results`` at each input's "height" x "width" with pred_masks."""
        processed = []
        for img_idx, (p, inputs, image_size) in enumerate(
            zip(results, batched_inputs, image_sizes)
        ):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            # Scales boxes to the output size, clips them and drops empty ones; the blender then
            # pastes the R x R probabilities into the boxes' crops (threshold 0.5). Scaling a
            # clipped box and its crop commute, so these are the crops the masks were made on.
            instances = detector_postprocess(p, height, width)
            instances.pred_masks = self.blender.paste(
                instances.mask_probs, instances.pred_boxes, (height, width)
            )
            instances.remove("mask_probs")
            result = {"instances": instances}
            if self.visualize:
                result["bases"] = [b[img_idx] for b in basis_out["bases"]]
                if "seg_thing_out" in basis_out:
                    result["sem_thing_seg"] = basis_out["seg_thing_out"][img_idx]
            processed.append(result)
        return processed
