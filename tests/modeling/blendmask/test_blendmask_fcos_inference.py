"""FCOS post-processing on hand-made predictions."""

import math
import unittest

import torch
from detectron2.structures import Boxes, Instances

from .blendmask_testing import fcos_losses, fcos_predict, one_level_fcos


def _logit(p):
    return math.log(p / (1 - p))


def _predictions(cls_probs, ctr_probs, deltas):
    """One image, one level of 2x2 cells, 3 classes. Background cells get probability 1e-4."""
    logits = torch.full((1, 3, 2, 2), _logit(1e-4))
    ctr = torch.full((1, 1, 2, 2), _logit(0.5))
    reg = torch.ones(1, 4, 2, 2)
    for (cell, cls), p in cls_probs.items():
        logits[0, cls, cell // 2, cell % 2] = _logit(p)
    for cell, p in ctr_probs.items():
        ctr[0, 0, cell // 2, cell % 2] = _logit(p)
    for cell, d in deltas.items():
        reg[0, :, cell // 2, cell % 2] = torch.tensor(d)
    return [logits], [reg], [ctr], [torch.zeros(1, 8, 2, 2)]


def _fcos(outputs, **kwargs):
    """FCOS with ``kwargs`` for the head outputs ``outputs`` (their classes)."""
    return one_level_fcos(outputs[0][0].shape[1], **kwargs)


def _run(outputs, **kwargs):
    """The detections on one 16 x 16 image of FCOS with ``kwargs`` (inference mode) whose head
    predicts ``outputs``."""
    return fcos_predict(_fcos(outputs, **kwargs).eval(), outputs, [(16, 16)])[0]


class TestFCOSInference(unittest.TestCase):
    def test_threshold_with_and_without_centerness(self):
        # Cell 1 = location (12, 4): class 2 with p_cls 0.3 and p_ctr 0.1 -> 0.03.
        # Deltas (1, 1, 1, 1) strides -> box (12-8, 4-8, 12+8, 4+8) = (4, -4, 20, 12),
        # not clipped to the image.
        outputs = _predictions({(1, 2): 0.3}, {1: 0.1}, {})
        # THRESH_WITH_CTR: 0.03 < 0.05 -> nothing survives.
        self.assertEqual(len(_run(outputs, thresh_with_ctr=True)), 0)
        # Otherwise 0.3 > 0.05 passes and the score is sqrt(0.3 * 0.1).
        result = _run(outputs, thresh_with_ctr=False)
        self.assertEqual(len(result), 1)
        self.assertEqual(result.pred_classes.tolist(), [2])
        self.assertAlmostEqual(result.scores[0].item(), math.sqrt(0.03), places=5)
        self.assertEqual(result.pred_boxes.tensor.tolist(), [[4.0, -4.0, 20.0, 12.0]])
        self.assertEqual(result.locations.tolist(), [[12.0, 4.0]])
        self.assertEqual(result.fpn_levels.tolist(), [0])

    def test_class_aware_nms_and_one_location_several_classes(self):
        # Cells 0 and 1 predict the same large box (4 strides around each location shifted so
        # the boxes coincide): class 0 twice -> NMS keeps the better one; class 1 at cell 1 is
        # another class and survives class-aware NMS.
        big = (4.0, 4.0, 4.0, 4.0)
        shifted = (5.0, 4.0, 3.0, 4.0)  # from (12, 4): same box as cell 0's from (4, 4)
        outputs = _predictions({(0, 0): 0.9, (1, 0): 0.8, (1, 1): 0.7}, {}, {0: big, 1: shifted})
        result = _run(outputs, thresh_with_ctr=False)
        pairs = sorted(zip(result.locations[:, 0].tolist(), result.pred_classes.tolist()))
        self.assertEqual(pairs, [(4.0, 0), (12.0, 1)])
        self.assertTrue(bool((result.scores[:-1] >= result.scores[1:]).all()))

    def test_one_class_per_location(self):
        # Cell 1 scores class 1 at 0.8 and class 2 at 0.6; cell 0 class 2 at 0.5 and class 0 at
        # 0.5 (a tie). By default every class above the threshold is a candidate (AdelaiDet);
        # with one_class_per_location only each location's best survives, ties included.
        outputs = _predictions(
            {(1, 1): 0.8, (1, 2): 0.6, (0, 2): 0.5, (0, 0): 0.5},
            {},
            {0: (0.1, 0.1, 0.1, 0.1), 1: (0.1, 0.1, 0.1, 0.1)},
        )
        pairs = lambda r: sorted(  # noqa: E731
            zip(r.locations[:, 0].tolist(), r.pred_classes.tolist())
        )
        every = _run(outputs)
        self.assertEqual(pairs(every), [(4.0, 0), (4.0, 2), (12.0, 1), (12.0, 2)])
        best = _run(outputs, one_class_per_location=True)
        self.assertEqual(pairs(best), [(4.0, 0), (4.0, 2), (12.0, 1)])
        # The score of a kept class is unchanged: sqrt(p_cls * p_ctr).
        kept = best.scores[(best.locations[:, 0] == 12.0)]
        self.assertAlmostEqual(kept.item(), math.sqrt(0.8 * 0.5), places=5)

    def test_pre_and_post_nms_topk(self):
        # Four far-apart tiny boxes (no NMS interaction), probabilities 0.9, 0.6, 0.6, 0.3.
        outputs = _predictions(
            {(0, 0): 0.9, (1, 0): 0.6, (2, 0): 0.6, (3, 0): 0.3},
            {c: 1 - 1e-6 for c in range(4)},
            {c: (0.1, 0.1, 0.1, 0.1) for c in range(4)},
        )
        # Post-NMS top-2 keeps every detection scoring >= the 2nd best: the 0.6 tie keeps 3.
        result = _run(outputs, post_nms_topk_test=2)
        self.assertEqual(len(result), 3)
        result = _run(outputs, post_nms_topk_test=1)
        self.assertEqual(len(result), 1)
        # Pre-NMS top-k per level.
        result = _run(outputs, pre_nms_topk_test=2)
        self.assertEqual(len(result), 2)
        self.assertAlmostEqual(result.scores[0].item(), math.sqrt(0.9), places=4)

    def test_training_thresholds(self):
        outputs = _predictions({(1, 2): 0.3}, {1: 0.1}, {})
        gt = Instances((16, 16), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 16.0, 16.0]])))
        gt.gt_classes = torch.tensor([2])
        # Training: losses and positives.
        fcos = _fcos(outputs, score_thresh_train=0.5, score_thresh_test=0.0).train()
        positives, _, losses = fcos_losses(fcos, outputs, [gt])
        self.assertEqual(len(positives), 4)
        self.assertEqual(set(losses), {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"})
        # Detections in training mode use the *train* threshold: 0.3 * 0.5 (ctr) < 0.5 -> none.
        self.assertEqual(len(fcos_predict(fcos, outputs, [(16, 16)])[0]), 0)
        # In inference mode the test threshold, 0: every (cell, class).
        self.assertEqual(len(fcos_predict(fcos.eval(), outputs, [(16, 16)])[0]), 4 * 3)


if __name__ == "__main__":
    unittest.main()
