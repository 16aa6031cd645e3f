"""
BlendMask inference in a form that ``torch.jit.trace`` records for any image.

Shape shorthand: L FCOS levels, C classes, D detections, K bases, M attention side, R mask
side, H, W: image size.

The model's own inference skips empty levels, applies the per-level top-k only when a level has
more candidates, and keeps the post-NMS ties with ``.item()``: Python decisions that tracing
would freeze. Here the same steps are written with tensor operations; the backbone, basis
module, FCOS head, top layer, pooler and blender are the model's own. The top layer runs on
whole maps and is read at the detections' cells (as AdelaiDet does; the model computes only
those cells, with the same values up to float rounding).
"""

from typing import Dict, List

import torch
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from tensormask_proj.modeling.blendmask.blender import blend
from tensormask_proj.modeling.blendmask.fcos_postprocess import best_class_only, distances_to_boxes
from tensormask_proj.modeling.blendmask.fcos_targets import compute_locations

from .traceable import batched_nms, clamped_count, in_group_order, paste_masks, select

__all__ = ["DeployableBlendMask"]


class DeployableBlendMask(nn.Module):
    """
    Wraps a ``BlendMask`` (eval mode) with a traceable inference; same inputs as the model,
    returns one ``Instances`` per image at the input resolution with ``pred_boxes``,
    ``scores``, ``pred_classes`` and ``pred_masks`` (bool, (D, H, W)).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batched_inputs: List[Dict[str, Tensor]]) -> List[Instances]:
        model = self.model
        fcos = model.proposal_generator
        images = model.preprocess_image(batched_inputs)
        features = model.backbone(images.tensor)
        bases = model.basis_module(features)[0]["bases"]
        features = [features[f] for f in fcos.in_features]
        pred_logits, pred_deltas, pred_ctrness, box_features = fcos.fcos_head(features)
        locations = compute_locations(features, fcos.strides)
        attentions = [model.top_layer(x) for x in box_features]
        pred_logits = [permute_to_N_HWA_K(x, fcos.num_classes) for x in pred_logits]
        pred_deltas = [permute_to_N_HWA_K(x, 4) for x in pred_deltas]
        pred_ctrness = [permute_to_N_HWA_K(x, 1) for x in pred_ctrness]
        results = []
        for i in range(len(batched_inputs)):
            image_size = images.image_sizes[i]
            per_level = [
                self._decode_level(
                    level,
                    locations[level],
                    pred_logits[level][i],
                    pred_deltas[level][i],
                    pred_ctrness[level][i],
                )
                for level in range(len(locations))
            ]
            boxes, scores, classes, levels, cells = (
                torch.cat([p[k] for p in per_level]) for k in range(5)
            )
            keep = self._nms_and_topk(boxes, scores, classes)
            boxes, scores, classes, levels, cells = (
                t[keep] for t in (boxes, scores, classes, levels, cells)
            )
            # Masks are predicted on the boxes clipped to the image, as the model does.
            clipped = Boxes(boxes)
            clipped.clip(image_size)
            boxes = clipped.tensor
            # Top-layer attentions at each detection's cell, one group per level.
            attns = in_group_order(
                [
                    (sel, self._at_cells(attentions[level][i], cells[sel]))
                    for level, sel in ((i, select(levels == i)) for i in range(len(locations)))
                ]
            )
            # One extra all-zero row, dropped after blending: ``blend`` returns early when it gets
            # no instance, and tracing on an image without detections would record that branch
            # for every image.
            blender = model.blender
            crops = blender.crop_boxes(boxes, image_size)
            rois = blender.pooler(
                [b[i : i + 1] for b in bases], [Boxes(torch.cat([crops, crops.new_zeros(1, 4)]))]
            )
            attns = torch.cat([attns, attns.new_zeros(1, attns.shape[1])])
            probs = blend(rois, attns, blender.attn_size, blender.top_interp)[:-1].sigmoid()
            scores = blender.rescore(scores, probs)
            if blender.rescore_by_maskness:
                # By decreasing final score, as the model returns them.
                scores, order = scores.sort(descending=True)
                boxes, classes, probs = boxes[order], classes[order], probs[order]
            result = Instances(
                image_size,
                pred_boxes=Boxes(boxes),
                scores=scores,
                pred_classes=classes,
                mask_probs=probs,
            )
            # Scales (here by 1), clips and drops empty boxes; the masks fill the boxes' crops.
            result = detector_postprocess(result, image_size[0], image_size[1])
            results.append(
                Instances(
                    result.image_size,
                    pred_boxes=result.pred_boxes,
                    scores=result.scores,
                    pred_classes=result.pred_classes,
                    pred_masks=paste_masks(
                        result.mask_probs,
                        blender.crop_boxes(result.pred_boxes.tensor, image_size),
                        image_size,
                    ),
                )
            )
        return results

    @staticmethod
    def _at_cells(attention: Tensor, cells: Tensor) -> Tensor:
        """attention (K*M*M, Hi, Wi) read at flat cells (n,): (n, K*M*M)."""
        return attention.flatten(1)[:, cells].t()

    def _decode_level(self, level, locations, logits, deltas, ctrness):
        """As ``fcos_postprocess.decode_level``, with a top-k of min(count, PRE_NMS_TOPK)."""
        fcos = self.model.proposal_generator
        scores = logits.sigmoid()
        if fcos.one_class_per_location:
            scores = best_class_only(scores)
        ctr = ctrness.sigmoid()
        if fcos.thresh_with_ctr:
            scores = scores * ctr
        candidate = scores > fcos.score_thresh_test
        if not fcos.thresh_with_ctr:
            scores = scores * ctr
        loc_inds, classes = torch.nonzero(candidate).unbind(dim=1)
        cand_scores = scores[loc_inds, classes]
        cand_scores, order = cand_scores.topk(clamped_count(cand_scores, fcos.pre_nms_topk_test))
        loc_inds, classes = loc_inds[order], classes[order]
        loc = locations[loc_inds]
        boxes = distances_to_boxes(loc, deltas[loc_inds] * fcos.strides[level])
        return boxes, torch.sqrt(cand_scores), classes, torch.full_like(classes, level), loc_inds

    def _nms_and_topk(self, boxes: Tensor, scores: Tensor, classes: Tensor) -> Tensor:
        """Kept indices by decreasing score: NMS, then the POST_NMS_TOPK best with their ties."""
        fcos = self.model.proposal_generator
        keep = batched_nms(boxes, scores, classes, fcos.nms_thresh)
        if fcos.post_nms_topk_test <= 0:
            return keep
        kept_scores = scores[keep]
        count = clamped_count(keep, fcos.post_nms_topk_test)
        # The count-th best score; with no detection, the appended -1 (index -1), below every
        # score (scores are in [0, 1]; an infinite constant does not pass the ONNX exporter).
        padded = torch.cat([kept_scores, kept_scores.new_full((1,), -1.0)])
        return keep[kept_scores >= padded[count - 1]]
