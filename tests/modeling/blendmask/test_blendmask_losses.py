"""FCOS / BlendMask losses against hand-computed values."""

import math
import unittest

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

from tensormask_proj.modeling.blendmask.losses import (
    basis_semantic_loss,
    blender_mask_loss,
    distance_box_ious,
    iou_loss,
)

from .blendmask_testing import fcos_losses, one_level_fcos


class TestIoULoss(unittest.TestCase):
    def test_identical_boxes(self):
        box = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
        for t in ("iou", "linear_iou", "giou"):
            self.assertAlmostEqual(iou_loss(box, box, loss_type=t).item(), 0.0, places=6)

    def test_nested_boxes_plus_one_smoothing(self):
        # pred (1,1,1,1): area 4; target (2,2,2,2): area 16; I = 2*2 = 4; U = 16.
        # IoU = (4+1)/(16+1) = 5/17 (the +1 smoothing); enclosing C = 16 = U so GIoU = IoU.
        pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
        target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
        self.assertAlmostEqual(iou_loss(pred, target, loss_type="linear_iou").item(), 12 / 17, 6)
        self.assertAlmostEqual(iou_loss(pred, target, loss_type="giou").item(), 12 / 17, 6)
        self.assertAlmostEqual(iou_loss(pred, target, loss_type="iou").item(), -math.log(5 / 17), 6)

    def test_giou_enclosing_term_and_weights(self):
        # pred (0,0,2,2) spans [x, x+2] x [y, y+2]; target (1,1,1,1) spans [x-1, x+1]^2.
        # A* = 4, A = 4, I = (0+1)*(0+1) = 1, U = 7, IoU = (1+1)/(7+1) = 1/4.
        # C = (1+2)*(1+2) = 9, GIoU = 1/4 - (9-7)/9 = 1/36, loss 35/36.
        pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
        target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
        weight = torch.tensor([0.5, 2.0])
        expected = 0.5 * 35 / 36 + 2.0 * 12 / 17
        self.assertAlmostEqual(iou_loss(pred, target, weight, "giou").item(), expected, places=6)

    def test_distance_box_ious(self):
        # The IoUs behind the losses above: 5/17 (nested) and 1/4 (offset), 1 for equal boxes.
        pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
        target = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
        expected = torch.tensor([5 / 17, 1 / 4, 1.0])
        self.assertTrue(torch.allclose(distance_box_ious(pred, target), expected))
        self.assertEqual(distance_box_ious(torch.zeros(0, 4), torch.zeros(0, 4)).shape, (0,))

    def test_bad_type(self):
        with self.assertRaisesRegex(ValueError, "LOC_LOSS_TYPE"):
            iou_loss(torch.ones(1, 4), torch.ones(1, 4), loss_type="l1")


class TestMaskAndSemanticLosses(unittest.TestCase):
    def test_blender_mask_loss(self):
        # Instance 0: logits 0 everywhere, target 1 -> BCE log 2 per pixel.
        # Instance 1: logits 2, target half 0 / half 1 -> mean of softplus(2) and softplus(-2).
        logits = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 2.0)])
        half = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])
        targets = torch.stack([torch.ones(4, 4), half])
        weights = torch.tensor([0.25, 1.0])
        sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
        expected = (0.25 * math.log(2) + 1.0 * 0.5 * (sp(2) + sp(-2))) / 0.5
        loss = blender_mask_loss(logits, targets.bool(), weights, torch.tensor(0.5))
        self.assertAlmostEqual(loss.item(), expected, places=5)

    def test_semantic_target_downsampling_matches_nearest_interpolation(self):
        # AdelaiDet downsamples with F.interpolate(scale_factor=1/stride) (nearest).
        torch.manual_seed(0)
        targets = torch.randint(0, 4, (2, 32, 48))
        logits = torch.randn(2, 4, 4, 6)
        ref_targets = F.interpolate(targets[:, None].float(), scale_factor=1 / 8)[:, 0].long()
        expected = F.cross_entropy(logits, ref_targets)
        self.assertAlmostEqual(basis_semantic_loss(logits, targets, 8).item(), expected.item(), 6)
        with self.assertRaisesRegex(ValueError, "COMMON_STRIDE"):
            basis_semantic_loss(logits, targets, 4)


class TestFCOSLosses(unittest.TestCase):
    def test_no_gt_only_classification_loss(self):
        # 2x2 cells, 2 classes, every logit log(0.01/0.99) (p = 0.01); no positives -> the
        # normaliser is max(0, 1) = 1 and every element is a negative:
        # FL = (1 - alpha) * p^2 * -log(1 - p) = 0.75 * 1e-4 * -log(0.99), times 4 * 2 elements.
        logit = math.log(0.01 / 0.99)
        predictions = (
            [torch.full((1, 2, 2, 2), logit, requires_grad=True)],
            [torch.ones(1, 4, 2, 2, requires_grad=True)],
            [torch.zeros(1, 1, 2, 2, requires_grad=True)],
            [torch.zeros(1, 8, 2, 2)],
        )
        fcos = one_level_fcos(2)
        gt = Instances((16, 16), gt_boxes=Boxes(torch.zeros(0, 4)))
        gt.gt_classes = torch.zeros(0, dtype=torch.long)
        positives, _, losses = fcos_losses(fcos, predictions, [gt])
        expected = 8 * 0.75 * 1e-4 * -math.log(0.99)
        self.assertAlmostEqual(losses["loss_fcos_cls"].item(), expected, places=9)
        self.assertEqual(losses["loss_fcos_loc"].item(), 0.0)
        self.assertEqual(losses["loss_fcos_ctr"].item(), 0.0)
        self.assertEqual(len(positives), 0)
        sum(losses.values()).backward()  # all predictions stay connected to the graph
        self.assertIsNotNone(predictions[1][0].grad)

    def test_moving_fg_normaliser_is_checkpointed(self):
        # No positives: the EMA moves from AdelaiDet's 100 towards max(0, 1) = 1.
        logit = math.log(0.01 / 0.99)
        outputs = (
            [torch.full((1, 2, 2, 2), logit)],
            [torch.ones(1, 4, 2, 2)],
            [torch.zeros(1, 1, 2, 2)],
            [torch.zeros(1, 8, 2, 2)],
        )
        gt = Instances((16, 16), gt_boxes=Boxes(torch.zeros(0, 4)))
        gt.gt_classes = torch.zeros(0, dtype=torch.long)
        fcos = one_level_fcos(2, loss_normalizer_cls="moving_fg")
        for _ in range(2):
            _, _, losses = fcos_losses(fcos, outputs, [gt])
        ema = 0.9 * (0.9 * 100 + 0.1) + 0.1
        self.assertAlmostEqual(float(fcos.moving_num_pos), ema, places=4)
        expected = 8 * 0.75 * 1e-4 * -math.log(0.99) / ema
        self.assertAlmostEqual(losses["loss_fcos_cls"].item(), expected, places=9)
        # In the state dict, so a checkpoint (and --resume) continues the EMA.
        resumed = one_level_fcos(2, loss_normalizer_cls="moving_fg")
        resumed.load_state_dict(fcos.state_dict())
        self.assertAlmostEqual(float(resumed.moving_num_pos), ema, places=4)
        # The other settings keep AdelaiDet's state-dict names.
        self.assertNotIn("moving_num_pos", one_level_fcos(2).state_dict())

    def test_one_positive(self):
        # One 2x2 level of stride 8 (locations (4|12, 4|12)), gt [0, 0, 16, 16] of class 1.
        # Centre (8, 8), radius 12: all four locations are inside; max distance 12 is in range.
        # Location (4, 4): l*=t*=4, r*=b*=12 -> in strides (0.5, 0.5, 1.5, 1.5),
        # c* = sqrt(1/3 * 1/3) = 1/3; by symmetry every location has c* = 1/3, so D = 4/3.
        # Predictions equal to the targets -> IoU = GIoU = 1 -> loc loss 0.
        reg_targets = torch.tensor(
            [[0.5, 0.5, 1.5, 1.5], [1.5, 0.5, 0.5, 1.5], [0.5, 1.5, 1.5, 0.5], [1.5, 1.5, 0.5, 0.5]]
        )
        deltas = reg_targets.t().reshape(1, 4, 2, 2)
        predictions = (
            [torch.zeros(1, 2, 2, 2)],
            [deltas],
            [torch.zeros(1, 1, 2, 2)],
            [torch.zeros(1, 8, 2, 2)],
        )
        fcos = one_level_fcos(2)
        gt = Instances((16, 16))
        gt.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
        gt.gt_classes = torch.tensor([1])
        pos, loss_denorm, losses = fcos_losses(fcos, predictions, [gt])
        self.assertEqual(len(pos), 4)
        self.assertTrue(torch.allclose(pos.reg_targets, reg_targets))
        self.assertTrue(torch.allclose(pos.gt_ctrs, torch.full((4,), 1 / 3)))
        self.assertAlmostEqual(loss_denorm.item(), 4 / 3, places=6)
        # Each positive's decoded prediction (deltas equal to the targets) is the gt box.
        self.assertTrue(torch.allclose(pos.box_preds, gt.gt_boxes.tensor.expand(4, 4)))
        self.assertFalse(pos.box_preds.requires_grad)
        self.assertAlmostEqual(losses["loss_fcos_loc"].item(), 0.0, places=6)
        # Centerness BCE with logit 0 against 1/3: log 2 per positive; / 4 positives.
        self.assertAlmostEqual(losses["loss_fcos_ctr"].item(), math.log(2), places=6)
        # Classification, logits 0 (p = 1/2): positives (class 1) alpha*(1/2)^2*log 2,
        # the other 4 elements (1 - alpha)*(1/2)^2*log 2; total / 4 positives.
        expected_cls = (4 * 0.25 + 4 * 0.75) * 0.25 * math.log(2) / 4
        self.assertAlmostEqual(losses["loss_fcos_cls"].item(), expected_cls, places=6)

    def test_one_positive_iou_quality(self):
        # The layout of test_one_positive, box quality "iou": every location predicts
        # (1, 1, 1, 1) strides against targets that are permutations of (0.5, 0.5, 1.5, 1.5).
        # Both boxes have area 4, I = 1.5 * 1.5 = 2.25, U = 5.75, IoU = 3.25 / 6.75 = 13/27;
        # enclosing C = 2.5^2 = 6.25, GIoU = 13/27 - 0.5/6.25.
        deltas = torch.ones(1, 4, 2, 2, requires_grad=True)
        quality_logits = torch.ones(1, 1, 2, 2, requires_grad=True)
        predictions = (
            [torch.zeros(1, 2, 2, 2)],
            [deltas],
            [quality_logits],
            [torch.zeros(1, 8, 2, 2)],
        )
        fcos = one_level_fcos(2, box_quality="iou")
        gt = Instances((16, 16))
        gt.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
        gt.gt_classes = torch.tensor([1])
        _, loss_denorm, losses = fcos_losses(fcos, predictions, [gt])
        self.assertEqual(set(losses), {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_iou"})
        iou = 13 / 27
        # Unweighted GIoU loss over the 4 positives.
        self.assertAlmostEqual(losses["loss_fcos_loc"].item(), 1 - (iou - 0.08), places=6)
        # BCE with logit 1 against the IoU: softplus(1) - IoU, per positive; / 4 positives.
        self.assertAlmostEqual(losses["loss_fcos_iou"].item(), math.log1p(math.e) - iou, places=6)
        # The blender's normaliser stays the sum of centerness targets (4 x 1/3).
        self.assertAlmostEqual(loss_denorm.item(), 4 / 3, places=6)
        # The IoU target is detached: the quality loss moves only the quality logits.
        losses["loss_fcos_iou"].backward()
        self.assertIsNone(deltas.grad)
        self.assertIsNotNone(quality_logits.grad)

    def test_bad_box_quality(self):
        with self.assertRaisesRegex(ValueError, "BOX_QUALITY"):
            one_level_fcos(2, box_quality="centerness")


if __name__ == "__main__":
    unittest.main()
