"""
Helpers of the export tests: models whose detections are non-trivial, and the comparison of an
exported model's outputs with the PyTorch model's.

Untrained models detect nothing (the classifier's prior is 0.01, below the score thresholds),
so the test models get deterministic weights that make them fire: TensorMask's classification
bias is raised (most windows score ~0.27, above the 0.05 threshold, and the top 100 differ by
their tower outputs); BlendMask's classification and box biases are raised (boxes of ~2 strides
per side) and its bases made far from 0 (seeded), so that its masks are partial, not all-0.5.
"""

import os

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, pairwise_iou
from modeling.tensormask.tensormask_testing import HEAD_VARIANTS, QUICK_CONFIG
from project_testing import CONFIG_DIR, project_cfg

BLENDMASK_CONFIG = os.path.join(
    CONFIG_DIR, "quick_schedules", "blendmask_R_18_GN_FPN_instant_test.yaml"
)

# Tolerances of an exported model against the PyTorch model, float32 on the CPU. TorchScript
# runs the same kernels: the only differences come from computing the mask windows densely and
# pasting all masks at once (the model: sparse windows, one paste per box), equal up to float
# rounding. onnxruntime runs other convolution kernels (other summation orders): logits differ
# by ~1e-6 relative, boxes by ~1e-4 px (measured 2.4e-4 px at most), scores by ~1e-6
# (measured 6.6e-7). A mask is a thresholded probability, so a pixel whose probability is within
# that rounding of 0.5 can flip: measured 2 pixels in 30 000 for TensorMask, and 11 in 7168
# (0.15%) for the test BlendMask on a shapes_val image of generator version 4 (its random
# bases blend into flat probability maps with many pixels near 0.5).
BOX_TOL = 1e-3  # px
SCORE_TOL = 1e-5
MASK_PIXEL_FRACTION = 3e-3  # of all the reference's mask pixels in the image
# A detection whose IoU with a higher-scoring one of its class is within this of the NMS
# threshold is kept or suppressed by the rounding (measured: IoU 0.499995 against 0.5 for the
# test TensorMask, whose near-uniform scores make many overlapping windows): the exported model
# may drop it and keep the next candidate instead. At most MAX_NMS_TIES per image.
NMS_TIE_IOU = 1e-4
MAX_NMS_TIES = 2


def lively_tensormask(variant: str):
    """The quick TensorMask with the head variant ``variant`` of HEAD_VARIANTS, firing."""
    cfg = project_cfg(QUICK_CONFIG, HEAD_VARIANTS[variant])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.head.cls_score.bias.fill_(-1.0)
    return cfg, model


def lively_blendmask(opts=()):
    """The instant-test BlendMask (160 px, 20 detections), firing with partial masks."""
    cfg = project_cfg(BLENDMASK_CONFIG, opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    head = model.proposal_generator.fcos_head
    bases = model.basis_module.tower[-1]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head.cls_logits.bias.fill_(0.0)
        head.bbox_pred.bias.fill_(2.0)
        bases.weight.copy_(torch.randn(bases.weight.shape, generator=g) * 0.3)
        bases.bias.copy_(torch.randn(bases.bias.shape, generator=g) * 2.0)
    return cfg, model


def nms_threshold(cfg) -> float:
    """The IoU threshold of the final NMS of ``cfg``'s model."""
    if cfg.MODEL.META_ARCHITECTURE == "TensorMask":
        return cfg.MODEL.TENSOR_MASK.NMS_THRESH_TEST
    return cfg.MODEL.FCOS.NMS_TH


def _on_nms_threshold(box, score, label, boxes, scores, labels, nms_thresh) -> bool:
    """Whether ``box`` overlaps a higher-scoring box of its class by the NMS threshold, up to
    NMS_TIE_IOU: whether NMS keeps it depends on the rounding."""
    above = (labels == label) & (scores >= score - SCORE_TOL)
    if not bool(above.any()):
        return False
    ious = pairwise_iou(Boxes(box[None]), Boxes(boxes[above]))[0]
    return bool(((ious - nms_thresh).abs() <= NMS_TIE_IOU).any())


def assert_same_detections(test, reference, outputs, names, nms_thresh=None):
    """
    The exported model's flattened ``outputs`` (named ``names``) hold the detections of the
    PyTorch model's ``reference`` Instances, within the tolerances above. Detections are matched
    by class, box and score rather than by rank, because two detections whose scores differ by
    less than the rounding may be ranked either way. With ``nms_thresh``, up to MAX_NMS_TIES
    reference detections that lie on the NMS threshold (see NMS_TIE_IOU) may lack a counterpart.
    """
    out = dict(zip(names, [torch.as_tensor(o) for o in outputs]))
    test.assertEqual(len(out["scores"]), len(reference), "number of detections")
    ref_boxes = reference.pred_boxes.tensor
    unused = torch.ones(len(reference), dtype=torch.bool)
    mismatched_pixels, ties = 0, 0
    for i in range(len(reference)):
        close = (
            unused
            & (out["pred_classes"] == reference.pred_classes[i])
            & ((out["scores"] - reference.scores[i]).abs() <= SCORE_TOL)
            & ((out["pred_boxes"] - ref_boxes[i]).abs().amax(dim=1) <= BOX_TOL)
        )
        matches = torch.nonzero(close).flatten()
        if len(matches) == 0 and nms_thresh is not None and ties < MAX_NMS_TIES:
            if _on_nms_threshold(
                ref_boxes[i], reference.scores[i], reference.pred_classes[i],
                out["pred_boxes"], out["scores"], out["pred_classes"], nms_thresh,
            ):  # fmt: skip
                ties += 1
                continue
        test.assertGreater(
            len(matches),
            0,
            f"detection {i} (class {int(reference.pred_classes[i])}, score "
            f"{float(reference.scores[i]):.6f}, box {ref_boxes[i].tolist()}) has no counterpart",
        )
        j = int(matches[0])
        unused[j] = False
        if reference.has("pred_masks"):
            mismatched_pixels += int((out["pred_masks"][j] != reference.pred_masks[i]).sum())
    if reference.has("pred_masks"):
        total = int(reference.pred_masks.sum())
        test.assertLessEqual(mismatched_pixels, MASK_PIXEL_FRACTION * total, f"of {total} pixels")
    else:
        test.assertNotIn("pred_masks", out)
