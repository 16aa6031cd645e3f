"""
TensorMask inference in a form that ``torch.jit.trace`` records for any image.

Shape shorthand: L levels, A windows per position, K classes, R windows of the image (all
levels), C candidates above the score threshold, D detections, S side of a natural window
(per level and window id), H, W: image size.

The model's own inference keeps each detection's window as a separate tensor (their sides
differ per level and window id) and, with ``SPARSE_WINDOWS``, decides in Python which window ids
have requests and which region of the finest grid the bipyramid computes (``.tolist()``): all of
this would freeze under tracing. Here the mask branch's ``dense_mask_windows`` (the official dense
computation, equal to the sparse windows up to float rounding, as the model's tests check) runs
the towers, predictors and ``swap_align2nat`` on whole maps; only the selection of the
detections' windows is rewritten with tensor operations, one group per (level, window id), a
fixed set given by the config. (``swap_align2nat_at`` exports too, see ``onnx_ops``; computing
the windows with it from whole maps would save only the op's output, the size of its input.)
"""

import contextlib
import importlib
import math
from typing import Dict, List

import torch
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

# The module (the package re-exports a function of the same name).
up_align2nat_module = importlib.import_module("tensormask_proj.modeling.tensormask.up_align2nat")

from .traceable import (
    batched_nms,
    clamped_count,
    in_group_order,
    paste_masks,
    select,
)

__all__ = ["DeployableTensorMask"]


def _mask_boxes(logits: Tensor, window_boxes: Tensor) -> Tensor:
    """
    Boxes of the windows' foreground (logit >= 0) for windows of one side, as
    ``postprocess.mask_window_boxes`` computes them one window at a time: Tensor[n, 4]; a window
    without foreground gets a zero-size box at its centre.
    """
    side = logits.shape[-1]
    fg = logits >= 0  # (n, S, S)
    cells = torch.arange(side, device=logits.device)

    def first_last(occupied):  # (n, S) -> first and last occupied cell, (S, -1) if none
        first = torch.where(occupied, cells, side).min(dim=1).values
        last = torch.where(occupied, cells, -1).max(dim=1).values
        return first, last

    row0, row1 = first_last(fg.any(dim=2))
    col0, col1 = first_last(fg.any(dim=1))
    corner, cell = window_boxes[:, :2], (window_boxes[:, 2:] - window_boxes[:, :2]) / side
    lo = torch.stack([col0, row0], dim=1).to(window_boxes.dtype)
    hi = torch.stack([col1, row1], dim=1).to(window_boxes.dtype) + 1
    boxes = torch.cat([corner + lo * cell, corner + hi * cell], dim=1)
    center = (window_boxes[:, :2] + window_boxes[:, 2:]) / 2
    return torch.where((row1 < 0)[:, None], torch.cat([center, center], dim=1), boxes)


@contextlib.contextmanager
def _traceable_window_sides():
    """
    ``up_align2nat._window_side`` computes the window side as ``int(round(channels ** 0.5))``,
    which fails when tracing (the channel count is then a 0-dim tensor, which has no
    ``__round__``). While tracing the mask windows, use ``math.isqrt`` instead (same value,
    valid for both). To be dropped once the modeling code uses ``math.isqrt`` itself.
    """
    original = getattr(up_align2nat_module, "_window_side", None)
    if original is None:
        yield
        return

    def window_side(x: Tensor, name: str) -> int:
        side = math.isqrt(x.shape[1])
        if x.dim() != 4 or side * side != x.shape[1]:
            return original(x, name)  # raises its own error
        return side

    up_align2nat_module._window_side = window_side
    try:
        yield
    finally:
        up_align2nat_module._window_side = original


class DeployableTensorMask(nn.Module):
    """
    Wraps a ``TensorMask`` (eval mode) with a traceable inference; same inputs as the model
    (a list of {"image": Tensor[3, H, W]}), returns one ``Instances`` per image at the input
    resolution with ``pred_boxes``, ``scores``, ``pred_classes`` and (with masks) ``pred_masks``
    (bool, (D, H, W)), as the model does when no "height"/"width" is given.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batched_inputs: List[Dict[str, Tensor]]) -> List[Instances]:
        model = self.model
        images = model.preprocess_image(batched_inputs)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        pred_logits, pred_deltas = model.head(features)
        pred_masks = None
        if model.mask_on:
            with _traceable_window_sides():
                pred_masks = model.mask_branch.dense_mask_windows(features)
        grid_sizes = [(x.shape[-2], x.shape[-1]) for x in features]
        windows = torch.cat(model.anchor_generator(grid_sizes, model.device))  # (R, 4)
        K = model.num_classes
        logits = torch.cat([permute_to_N_HWA_K(x, K) for x in pred_logits], dim=1)
        deltas = None
        if pred_deltas is not None:
            deltas = torch.cat([permute_to_N_HWA_K(x, 4) for x in pred_deltas], dim=1)
        return [
            self._inference_single_image(
                i,
                images.image_sizes[i],
                logits[i],
                None if deltas is None else deltas[i],
                pred_masks,
                windows,
                grid_sizes,
            )
            for i in range(len(batched_inputs))
        ]

    def _window_groups(self, pred_masks, image: int, window_idx: Tensor, grid_sizes):
        """(index into window_idx, logits Tensor[n_g, S, S]) per (level, window id)."""
        mask_branch = self.model.mask_branch
        levels, ys, xs, anchor_ids = self.model.anchor_generator.locate(window_idx, grid_sizes)
        for level, per_anchor in enumerate(pred_masks):
            for a, dense in enumerate(per_anchor):
                sel = select((levels == level) & (anchor_ids == a))
                side = mask_branch.window_side(level, a)
                logits = dense[image][:, ys[sel], xs[sel]].t().reshape(-1, side, side)
                yield sel, logits

    def _inference_single_image(
        self, image, image_size, logits_i, deltas_i, pred_masks, windows, grid_sizes
    ) -> Instances:
        model = self.model
        K = model.num_classes
        # As TensorMask._candidates and _nms: threshold, one top-k over all levels, NMS.
        scores = logits_i.sigmoid().flatten()
        candidates = select(scores > model.test_score_thresh)
        scores, order = scores[candidates].topk(
            clamped_count(candidates, model.test_topk_candidates)
        )
        candidates = candidates[order]
        window_idx, classes = candidates // K, candidates % K
        window_boxes = windows[window_idx]
        if model.nms_boxes == "regressed":
            boxes = model.box2box_transform.apply_deltas(deltas_i[window_idx], window_boxes)
        else:
            # Mask-bb NMS (paper §A.4) needs the masks of all candidates.
            boxes = in_group_order(
                [
                    (sel, _mask_boxes(w, window_boxes[sel]))
                    for sel, w in self._window_groups(pred_masks, image, window_idx, grid_sizes)
                ]
            )
            nonempty = select(Boxes(boxes).nonempty())
            boxes, scores, classes = boxes[nonempty], scores[nonempty], classes[nonempty]
            window_idx, window_boxes = window_idx[nonempty], window_boxes[nonempty]
        keep = batched_nms(boxes, scores, classes, model.test_nms_thresh)
        keep = keep[: model.max_detections_per_image]
        result = Instances(
            image_size,
            pred_boxes=Boxes(boxes[keep]),
            scores=scores[keep],
            pred_classes=classes[keep],
            window_idx=window_idx[keep],
            window_boxes=window_boxes[keep],
        )
        # Clips the boxes and drops empty ones, as the model's DenseDetector.forward does.
        result = detector_postprocess(result, image_size[0], image_size[1])
        out = Instances(
            result.image_size,
            pred_boxes=result.pred_boxes,
            scores=result.scores,
            pred_classes=result.pred_classes,
        )
        if model.mask_on:
            # Windows are pasted into their (unclipped) window boxes, as the model does.
            out.pred_masks = in_group_order(
                [
                    (sel, paste_masks(w.sigmoid(), result.window_boxes[sel], image_size))
                    for sel, w in self._window_groups(
                        pred_masks, image, result.window_idx, grid_sizes
                    )
                ]
            )
        return out
