"""The blender against hand computations."""

import math
import unittest

import torch
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

from tensormask_proj.modeling.blendmask.blender import Blender, blend, crop_boxes, maskness


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


class TestBlend(unittest.TestCase):
    def test_blend_hand_computed(self):
        # K = 2 bases, M = 2, R = 4. Basis 0 crop = +1 everywhere, basis 1 crop = -1.
        # Attention of basis 0 is 0; of basis 1 is [[0, 4], [0, 4]] (channel layout k*M*M+i*M+j).
        # Bilinear 2 -> 4 (align_corners=False) samples source x = (j + 0.5)/2 - 0.5
        # = -0.25, 0.25, 0.75, 1.25 -> clamped to [0, 1]: values 0, 1, 3, 4 along each row.
        # Softmax over K: w1 = sigmoid(a1 - a0) = sigmoid(0|1|3|4), w0 = 1 - w1.
        # Mask = w0 * 1 + w1 * (-1) = 1 - 2 * w1.
        rois = torch.stack([torch.ones(4, 4), -torch.ones(4, 4)])[None]
        attn = torch.tensor([0, 0, 0, 0, 0, 4, 0, 4], dtype=torch.float32)[None]
        mask = blend(rois, attn, attn_size=2, interp_mode="bilinear")
        row = [1 - 2 * _sigmoid(v) for v in (0, 1, 3, 4)]
        self.assertEqual(mask.shape, (1, 4, 4))
        for r in range(4):
            for c in range(4):
                self.assertAlmostEqual(mask[0, r, c].item(), row[c], places=5)

    def test_blend_nearest_and_empty(self):
        rois = torch.stack([torch.ones(4, 4), -torch.ones(4, 4)])[None]
        attn = torch.tensor([0, 0, 0, 0, 0, 4, 0, 4], dtype=torch.float32)[None]
        mask = blend(rois, attn, attn_size=2, interp_mode="nearest")
        # Nearest: columns 0-1 read a1 = 0, columns 2-3 read a1 = 4.
        expected = [0.0, 0.0, 1 - 2 * _sigmoid(4), 1 - 2 * _sigmoid(4)]
        self.assertTrue(torch.allclose(mask[0, 0], torch.tensor(expected), atol=1e-6))
        self.assertEqual(blend(torch.zeros(0, 2, 4, 4), torch.zeros(0, 8), 2).shape, (0, 4, 4))


class TestBlenderPooling(unittest.TestCase):
    def test_roialign_v2_sampling_ratio_1(self):
        # Bases at stride 4 (scale 0.25) whose value is the column index: sampling returns the
        # continuous x coordinate (in base pixels, pixel centres at +0.5 -> value = coord - 0.5).
        # Box x in [8, 40] -> [2, 10] on the bases, aligned=True shifts by -0.5 -> [1.5, 9.5];
        # R = 4 bins of width 2, one sample per bin at its centre: 2.5, 4.5, 6.5, 8.5.
        blender = Blender(pooler_resolution=4, attn_size=2)
        bases = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous()
        rois = blender.pooler([bases], [Boxes(torch.tensor([[8.0, 8.0, 40.0, 24.0]]))])
        self.assertTrue(torch.allclose(rois[0, 0, 0], torch.tensor([2.5, 4.5, 6.5, 8.5])))

    def test_predict(self):
        blender = Blender(pooler_resolution=4, attn_size=2)
        bases = [torch.ones(2, 2, 8, 8)]
        p0 = Instances((32, 32))
        p0.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 16.0, 16.0], [-4.0, 2.0, 40.0, 30.0]]))
        p0.top_feat = torch.zeros(2, 8)
        p0.scores = torch.tensor([0.9, 0.3])
        p1 = Instances((32, 32), pred_boxes=Boxes(torch.zeros(0, 4)), top_feat=torch.zeros(0, 8))
        p1.scores = torch.zeros(0)
        blender.predict(bases, [p0, p1])
        # Bases all 1, equal attentions -> logit 1 -> probability sigmoid(1), also for the box
        # that crosses the border: it is cropped clipped to the image.
        self.assertEqual(p0.mask_probs.shape, (2, 1, 4, 4))
        self.assertTrue(torch.allclose(p0.mask_probs, torch.full((2, 1, 4, 4), _sigmoid(1))))
        self.assertEqual(p1.mask_probs.shape, (0, 1, 4, 4))
        # No detection at all in the batch.
        p2 = Instances((32, 32), pred_boxes=Boxes(torch.zeros(0, 4)), top_feat=torch.zeros(0, 8))
        blender.predict(bases, [p2])
        self.assertEqual(p2.mask_probs.shape, (0, 1, 4, 4))


class TestCropScale(unittest.TestCase):
    """MODEL.BLENDMASK.CROP_SCALE: the blender's crops are the boxes enlarged and clipped."""

    def test_crop_boxes_by_hand(self):
        boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [-4.0, 2.0, 40.0, 30.0]])
        # Box 0: centre (20, 40), size (20, 40) -> x 1.5: [5, 10, 35, 70], clipped to the
        # (height 50, width 32) image: [5, 10, 32, 50]. Box 1: [-15, -5, 51, 37] -> clipped.
        expected = torch.tensor([[5.0, 10.0, 32.0, 50.0], [0.0, 0.0, 32.0, 37.0]])
        self.assertTrue(torch.allclose(crop_boxes(boxes, (50, 32), 1.5), expected))
        # Scale 1: the boxes clipped, bit for bit, in a new tensor.
        crops = crop_boxes(boxes, (50, 32))
        self.assertTrue(torch.equal(crops[0], torch.tensor([10.0, 20.0, 30.0, 50.0])))
        self.assertTrue(torch.equal(crops[1], torch.tensor([0.0, 2.0, 32.0, 30.0])))
        self.assertEqual(boxes[1, 0].item(), -4.0)
        self.assertEqual(crop_boxes(torch.zeros(0, 4), (50, 32), 2.0).shape, (0, 4))

    def test_mask_reaches_beyond_a_short_box(self):
        # An object [8, 24]^2 in a 32 x 32 image: basis 0 is +6 on it and -6 elsewhere, basis 1
        # is the same (equal attentions blend them to that logit). The detection's box
        # [12, 20]^2 cuts it short; with crop scale 2 the crop is the object's box.
        bases = torch.full((1, 2, 8, 8), -6.0)
        bases[:, :, 2:6, 2:6] = 6.0
        box = torch.tensor([[12.0, 12.0, 20.0, 20.0]])
        pasted = {}
        for scale in (1.0, 2.0):
            blender = Blender(pooler_resolution=8, attn_size=2, crop_scale=scale)
            p = Instances((32, 32), pred_boxes=Boxes(box.clone()), top_feat=torch.zeros(1, 8))
            p.scores = torch.ones(1)
            blender.predict([bases], [p])
            pasted[scale] = blender.paste(p.mask_probs, p.pred_boxes, (32, 32))[0]
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[12:20, 12:20] = True
        self.assertTrue(torch.equal(pasted[1.0], inside))
        # Crop [8, 24]^2: the bases' object edge is at 8 and 24 px; bilinear sampling puts the
        # 0.5 crossing there, one pixel either way.
        self.assertTrue(pasted[2.0][9:23, 9:23].all())
        self.assertFalse(pasted[2.0][:7].any() or pasted[2.0][:, :7].any())
        self.assertFalse(pasted[2.0][25:].any() or pasted[2.0][:, 25:].any())

    def test_training_targets_are_cropped_with_the_enlarged_boxes(self):
        # The gt [16, 48]^2 of a 64 x 64 image fills its box; crop scale 2 crops the whole
        # image, where the mask covers the middle half: cells 2-5 of 8, rows and columns.
        gt = Instances((64, 64))
        gt.gt_boxes = Boxes(torch.tensor([[16.0, 16.0, 48.0, 48.0]]))
        gt.gt_masks = PolygonMasks([[[16, 16, 48, 16, 48, 48, 16, 48]]])
        middle = torch.zeros(8, 8, dtype=torch.bool)
        middle[2:6, 2:6] = True
        bases = [torch.randn(1, 2, 16, 16)]
        positives = Instances(
            (0, 0), im_inds=torch.tensor([0]), gt_inds=torch.tensor([0]),
            gt_ctrs=torch.ones(1), box_preds=torch.tensor([[16.0, 16.0, 48.0, 48.0]]),
        )  # fmt: skip
        blender = Blender(pooler_resolution=8, attn_size=2, train_boxes="predicted", crop_scale=2.0)
        rois, targets = blender._crop_with_predicted_boxes(bases, positives, [gt])
        self.assertTrue(torch.equal(targets[0], middle))
        whole_image = blender.pooler(bases, [Boxes(torch.tensor([[0.0, 0.0, 64.0, 64.0]]))])
        self.assertTrue(torch.allclose(rois, whole_image))
        # "gt" boxes: the same crop, so the same loss.
        attns = torch.randn(1, 8)
        by_gt = Blender(pooler_resolution=8, attn_size=2, crop_scale=2.0)
        loss_gt = by_gt.losses(bases, attns, positives, [gt], torch.tensor(1.0))["loss_mask"]
        loss_pred = blender.losses(bases, attns, positives, [gt], torch.tensor(1.0))["loss_mask"]
        self.assertAlmostEqual(loss_gt.item(), loss_pred.item(), places=6)

    def test_bad_value(self):
        for bad in (0.5, 0.0, -1.0, float("nan")):
            with self.assertRaisesRegex(ValueError, "MODEL.BLENDMASK.CROP_SCALE"):
                Blender(crop_scale=bad)


class TestMaskness(unittest.TestCase):
    def test_hand_computed(self):
        probs = torch.tensor(
            [
                [[0.9, 0.7], [0.2, 0.5]],  # above 0.5: 0.9 and 0.7 (0.5 itself is not above)
                [[0.1, 0.2], [0.3, 0.4]],  # none above: 0
                [[1.0, 1.0], [1.0, 0.6]],
            ]
        )
        expected = torch.tensor([0.8, 0.0, 0.9])
        self.assertTrue(torch.allclose(maskness(probs), expected))
        # The (P, 1, R, R) layout of pred_masks gives the same values.
        self.assertTrue(torch.allclose(maskness(probs[:, None]), expected))
        self.assertEqual(maskness(torch.zeros(0, 1, 4, 4)).shape, (0,))

    def test_predict_rescores_only_when_asked(self):
        bases = [torch.zeros(1, 2, 8, 8)]
        bases[0][:, 0, :, :4] = 3.0  # left half of basis 0: logit 3 under equal attentions 1.5
        boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 0.0, 32.0, 32.0]])
        for rescore in (False, True):
            blender = Blender(pooler_resolution=4, attn_size=2, rescore_by_maskness=rescore)
            p = Instances((32, 32), pred_boxes=Boxes(boxes.clone()), top_feat=torch.zeros(2, 8))
            p.scores = torch.tensor([0.8, 0.6])
            blender.predict(bases, [p])
            if not rescore:
                self.assertTrue(torch.equal(p.scores, torch.tensor([0.8, 0.6])))
                continue
            # First box: its left half is sigmoid(1.5) (> 0.5), the right half 0.5 (not above);
            # second box (right half of the image): no pixel above 0.5, maskness 0.
            self.assertTrue(
                torch.allclose(p.scores, torch.tensor([0.8 * _sigmoid(1.5), 0.0]), atol=1e-6)
            )

    def test_predict_returns_detections_by_decreasing_score(self):
        # The boxes of test_predict_rescores_only_when_asked in the other order: the maskness
        # (0 for the right half, sigmoid(1.5) for the whole image) reverses FCOS's order, and the
        # returned detections are sorted again; without rescoring they keep FCOS's order.
        bases = [torch.zeros(1, 2, 8, 8)]
        bases[0][:, 0, :, :4] = 3.0
        boxes = torch.tensor([[16.0, 0.0, 32.0, 32.0], [0.0, 0.0, 32.0, 32.0]])
        for rescore in (False, True):
            blender = Blender(pooler_resolution=4, attn_size=2, rescore_by_maskness=rescore)
            p = Instances((32, 32), pred_boxes=Boxes(boxes.clone()), top_feat=torch.zeros(2, 8))
            p.scores = torch.tensor([0.8, 0.6])
            (result,) = blender.predict(bases, [p])
            if not rescore:
                self.assertIs(result, p)
                self.assertTrue(torch.equal(result.pred_boxes.tensor, boxes))
                continue
            self.assertTrue(
                torch.allclose(result.scores, torch.tensor([0.6 * _sigmoid(1.5), 0.0]), atol=1e-6)
            )
            self.assertTrue(torch.equal(result.pred_boxes.tensor, boxes.flip(0)))
            self.assertTrue(torch.equal(result.mask_probs, p.mask_probs.flip(0)))


class TestBlenderLoss(unittest.TestCase):
    def _gt(self, boxes, polygons, classes):
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
        inst.gt_classes = torch.tensor(classes, dtype=torch.long)
        inst.gt_masks = PolygonMasks(polygons)
        return inst

    def test_loss_indexes_gts_across_images(self):
        # Bases constant 2 -> every blended logit is 2 whatever the attention.
        # Image 0: gt A [0,0,32,32] with a full-box polygon -> target all 1.
        # Image 1: no gt. Image 2: gt B [0,0,32,32] whose polygon covers the left half -> half 1.
        # Positives: (gt A, c* 0.5), (gt B, c* 1.0), (gt B, c* 0.5); D = 2.
        # BCE(2, 1) = softplus(-2); BCE(2, 0) = softplus(2).
        blender = Blender(pooler_resolution=8, attn_size=2)
        bases = [torch.full((3, 2, 16, 16), 2.0, requires_grad=True)]
        full = [[0, 0, 32, 0, 32, 32, 0, 32]]
        left = [[0, 0, 16, 0, 16, 32, 0, 32]]
        gts = [
            self._gt([0, 0, 32, 32], [full], [0]),
            self._gt([], [], []),
            self._gt([0, 0, 32, 32], [left], [1]),
        ]
        positives = Instances(
            (0, 0),
            gt_inds=torch.tensor([0, 1, 1]),
            gt_ctrs=torch.tensor([0.5, 1.0, 0.5]),
        )
        attns = torch.randn(3, 8, requires_grad=True)
        loss = blender.losses(bases, attns, positives, gts, torch.tensor(2.0))["loss_mask"]
        sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
        half = 0.5 * (sp(-2) + sp(2))
        expected = (0.5 * sp(-2) + 1.0 * half + 0.5 * half) / 2.0
        self.assertAlmostEqual(loss.item(), expected, places=5)
        loss.backward()
        self.assertIsNotNone(bases[0].grad)

    def test_no_positive(self):
        blender = Blender(pooler_resolution=8, attn_size=2)
        bases = [torch.ones(1, 2, 16, 16, requires_grad=True)]
        attns = torch.zeros(0, 8, requires_grad=True)
        positives = Instances((0, 0), gt_inds=torch.zeros(0).long(), gt_ctrs=torch.zeros(0))
        loss = blender.losses(bases, attns, positives, [self._gt([], [], [])], torch.tensor(1e-6))
        self.assertEqual(loss["loss_mask"].item(), 0.0)
        loss["loss_mask"].backward()
        self.assertEqual(bases[0].grad.abs().sum().item(), 0.0)


class TestBlenderPredictedTrainBoxes(unittest.TestCase):
    """MODEL.BLENDMASK.TRAIN_BOXES "predicted": each positive's own box crops bases and target."""

    def _gts(self, bitmasks: bool):
        # Image 0: gt [0, 0, 32, 32] whose mask is its left half. Image 1: no gt.
        # Image 2: gts [0, 0, 32, 32] (full box) and [32, 32, 64, 64] (full box).
        left = [[0, 0, 16, 0, 16, 32, 0, 32]]
        full_a = [[0, 0, 32, 0, 32, 32, 0, 32]]
        full_b = [[32, 32, 64, 32, 64, 64, 32, 64]]
        gts = []
        for boxes, polygons in [
            ([[0, 0, 32, 32]], [left]),
            ([], []),
            ([[0, 0, 32, 32], [32, 32, 64, 64]], [full_a, full_b]),
        ]:
            inst = Instances((64, 64))
            inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
            masks = PolygonMasks(polygons)
            inst.gt_masks = BitMasks.from_polygon_masks(masks, 64, 64) if bitmasks else masks
            gts.append(inst)
        return gts

    def _positives(self):
        # Positive 0 (image 0, gt 0) predicts [0, 0, 32, 16]: IoU 0.5 with its gt -> kept.
        # Positive 1 (image 2, gt 1) predicts [40, 40, 60, 60]: IoU 0 with gt 1 -> gt box.
        # Positive 2 (image 2, gt 2) predicts [16, 32, 48, 64]: IoU 1/3 -> gt box.
        # Positive 3 (image 2, gt 2) predicts [24, 24, 64, 64]: IoU 0.64 -> kept.
        return Instances(
            (0, 0),
            im_inds=torch.tensor([0, 2, 2, 2]),
            gt_inds=torch.tensor([0, 1, 2, 2]),
            gt_ctrs=torch.ones(4),
            box_preds=torch.tensor(
                [[0, 0, 32, 16], [40, 40, 60, 60], [16, 32, 48, 64], [24, 24, 64, 64]],
                dtype=torch.float32,
            ),
        )

    def test_crops_follow_the_chosen_boxes(self):
        used = torch.tensor(
            [[0, 0, 32, 16], [0, 0, 32, 32], [32, 32, 64, 64], [24, 24, 64, 64]],
            dtype=torch.float32,
        )
        image_of = [0, 2, 2, 2]
        bases = [torch.randn(3, 2, 16, 16)]
        for bitmasks in (False, True):
            blender = Blender(pooler_resolution=8, attn_size=2, train_boxes="predicted")
            gts = self._gts(bitmasks)
            rois, targets = blender._crop_with_predicted_boxes(bases, self._positives(), gts)
            # Bases: the pooler on each positive's chosen box in its own image.
            for j in range(4):
                boxes = [Boxes(torch.zeros(0, 4)) for _ in range(3)]
                boxes[image_of[j]] = Boxes(used[j : j + 1])
                expected = blender.pooler(bases, boxes)
                self.assertTrue(torch.allclose(rois[j], expected[0]), (bitmasks, j))
            # Targets by hand. 0: left-half mask in its top half -> left 4 columns on all rows.
            left4 = torch.zeros(8, 8, dtype=torch.bool)
            left4[:, :4] = True
            self.assertTrue(torch.equal(targets[0], left4), bitmasks)
            # 1 and 2: the gt boxes of full-box masks -> all ones.
            self.assertTrue(targets[1].all() and targets[2].all(), bitmasks)
            # 3: box [24, 64]^2 over the mask [32, 64]^2 -> rows and columns from 32 px on,
            # i.e. the last 6 of 8 cells (each 5 px) are inside; the first cell is outside.
            self.assertFalse(targets[3][0].any() or targets[3][:, 0].any(), bitmasks)
            self.assertTrue(targets[3][2:, 2:].all(), bitmasks)

    def test_polygon_and_bitmask_targets_agree(self):
        bases = [torch.randn(3, 2, 16, 16)]
        blender = Blender(pooler_resolution=8, attn_size=2, train_boxes="predicted")
        _, from_polygons = blender._crop_with_predicted_boxes(
            bases, self._positives(), self._gts(False)
        )
        _, from_bitmasks = blender._crop_with_predicted_boxes(
            bases, self._positives(), self._gts(True)
        )
        self.assertTrue(torch.equal(from_polygons, from_bitmasks))

    def test_gt_mode_ignores_predicted_boxes(self):
        # With "gt" (default) the loss does not change when the predicted boxes do.
        bases = [torch.randn(3, 2, 16, 16)]
        attns = torch.randn(4, 8)
        blender = Blender(pooler_resolution=8, attn_size=2)
        positives = self._positives()
        loss_a = blender.losses(bases, attns, positives, self._gts(False), torch.tensor(4.0))
        positives.box_preds = positives.box_preds + 3.0
        loss_b = blender.losses(bases, attns, positives, self._gts(False), torch.tensor(4.0))
        self.assertEqual(loss_a["loss_mask"].item(), loss_b["loss_mask"].item())
        predicted = Blender(pooler_resolution=8, attn_size=2, train_boxes="predicted")
        loss_c = predicted.losses(bases, attns, positives, self._gts(False), torch.tensor(4.0))
        self.assertNotEqual(loss_a["loss_mask"].item(), loss_c["loss_mask"].item())

    def test_bad_value(self):
        with self.assertRaisesRegex(ValueError, "MODEL.BLENDMASK.TRAIN_BOXES"):
            Blender(train_boxes="proposals")


if __name__ == "__main__":
    unittest.main()
