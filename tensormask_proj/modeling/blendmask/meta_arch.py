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

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import ImageList
from torch import Tensor, nn

from .basis_module import build_basis_module
from .blender import Blender
from .fcos_targets import locations_to_cells
from .sparse_conv import conv2d_at_cells

__all__ = ["BlendMask"]


@META_ARCH_REGISTRY.register()
class BlendMask(nn.Module):
    """
    Inputs: detectron2's list of dicts with "image" (C, H, W) and, in training, "instances"
    (gt_boxes, gt_classes, gt_masks) and, with the basis module's auxiliary loss, "basis_sem"
    (H, W) long. Training returns the loss dict; inference returns
    ``[{"instances": Instances}]`` with pred_boxes, scores, pred_classes, locations, fpn_levels,
    top_feat and pred_masks (bool, output size).

    Training or inference is chosen by ``self.training`` alone: inputs that carry "instances" are
    fine in eval mode (AdelaiDet's blender took its training branch on them and crashed).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module,
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
            proposal_generator: the FCOS module (``modeling.blendmask.fcos.FCOS``).
            basis_module: a BASIS_MODULE_REGISTRY module.
            blender: a :class:`Blender`.
            num_bases: K.
            attn_size: M; the top layer predicts K*M*M channels per location.
            top_in_channels: channels of FCOS's box-tower features.
            pixel_mean, pixel_std: per-channel normalisation of the input images.
            visualize: add "bases" (and "sem_thing_seg") to the inference outputs.
        """
        super().__init__()
        # Registration order fixes the state-dict order (AdelaiDet's): backbone,
        # proposal_generator, basis_module, top_layer. The blender holds no state.
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.blender = blender
        self.basis_module = basis_module
        self.top_layer = nn.Conv2d(
            top_in_channels, num_bases * attn_size * attn_size, 3, stride=1, padding=1
        )
        nn.init.normal_(self.top_layer.weight, std=0.01)
        nn.init.constant_(self.top_layer.bias, 0)
        self.visualize = visualize
        # Not persistent: AdelaiDet checkpoints have no such entries, and the values come from
        # the config anyway. As buffers they follow .to() and define self.device.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if self.pixel_mean.shape != self.pixel_std.shape:
            raise ValueError(
                f"MODEL.PIXEL_MEAN {tuple(pixel_mean)} and MODEL.PIXEL_STD {tuple(pixel_std)} "
                "have different lengths"
            )

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
        proposal_generator = build_proposal_generator(cfg, input_shape)
        basis_module = build_basis_module(cfg, input_shape)
        top_in_channels = {input_shape[f].channels for f in cfg.MODEL.FCOS.IN_FEATURES}
        return {
            "backbone": backbone,
            "proposal_generator": proposal_generator,
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

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise, pad (with 0 after normalisation) and batch the images."""
        images = [x["image"].to(self.device) for x in batched_inputs]
        images = [(x - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def _semantic_targets(self, batched_inputs: List[Dict]):
        """(N, H, W) long "basis_sem" maps padded with 0 (background) like the images."""
        if any("basis_sem" not in x for x in batched_inputs):
            return None
        maps = [x["basis_sem"].to(self.device) for x in batched_inputs]
        return ImageList.from_tensors(maps, self.backbone.size_divisibility, pad_value=0).tensor

    def _attentions(self, box_features: List[Tensor], instances, im_inds: Tensor) -> Tensor:
        """
        The top layer's output (P, K*M*M) at each instance's location. Only these P outputs are
        computed (see ``sparse_conv``); the values equal the dense conv's.
        """
        rows, cols = locations_to_cells(
            instances.locations, instances.fpn_levels, self.proposal_generator.strides
        )
        return conv2d_at_cells(
            self.top_layer, box_features, instances.fpn_levels, im_inds, rows, cols
        )

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.training:
            return self.forward_training(batched_inputs, images, features)
        return self.forward_inference(batched_inputs, images, features)

    def forward_training(self, batched_inputs, images: ImageList, features: Dict[str, Tensor]):
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("BlendMask training needs 'instances' in every input dict")
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        for i, gt in enumerate(gt_instances):
            if len(gt) > 0 and not gt.has("gt_masks"):
                raise ValueError(
                    f"Training input {i} has instances without 'gt_masks' "
                    "(the dataset mapper needs MODEL.MASK_ON=True and mask annotations)"
                )
        sem_targets = self._semantic_targets(batched_inputs)
        basis_out, basis_losses = self.basis_module(features, sem_targets)
        fcos_out, fcos_losses = self.proposal_generator(images, features, gt_instances)
        positives = fcos_out["positives"]
        attns = self._attentions(fcos_out["box_features"], positives, positives.im_inds)
        mask_losses = self.blender.losses(
            basis_out["bases"], attns, positives, gt_instances, fcos_out["loss_denorm"]
        )
        return {**basis_losses, **fcos_losses, **mask_losses}

    @torch.no_grad()
    def forward_inference(self, batched_inputs, images: ImageList, features: Dict[str, Tensor]):
        basis_out, _ = self.basis_module(features)
        fcos_out, _ = self.proposal_generator(images, features)
        proposals = fcos_out["proposals"]
        for img_idx, p in enumerate(proposals):
            # Attentions only for the detections kept after NMS (AdelaiDet computes them at
            # every location and carries them through NMS).
            im_inds = torch.full_like(p.fpn_levels, img_idx)
            p.top_feat = self._attentions(fcos_out["box_features"], p, im_inds)
            # Clipped to the image, as detector_postprocess clips the output boxes: the blender
            # must crop with the boxes its masks are pasted into, or a box that crosses the
            # border gets its mask squeezed into the clipped box.
            p.pred_boxes.clip(p.image_size)
        self.blender.predict(basis_out["bases"], proposals)
        if self.blender.rescore_by_maskness:
            # Back to decreasing score, as detectron2's models return them (FCOS's are sorted;
            # rescoring can change the order). Stable: ties keep FCOS's order.
            proposals = [p[p.scores.sort(descending=True, stable=True)[1]] for p in proposals]

        processed = []
        for img_idx, (p, inputs, image_size) in enumerate(
            zip(proposals, batched_inputs, images.image_sizes)
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
