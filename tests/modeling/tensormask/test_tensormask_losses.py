"""TensorMask losses against hand-computed values."""

import math
import unittest

import torch

from tensormask_proj.modeling.tensormask.losses import (
    box_regression_loss,
    classification_loss,
    mask_loss,
)


class TestClassificationLoss(unittest.TestCase):
    def test_fl_star_hand_computed(self):
        # FL*(x, t) = -log(sigmoid(gamma * x * (2t - 1))) / gamma * alpha_t, gamma 3, alpha 0.3.
        # Window 0 is class 0: (x=0, t=1): log(2)/3 * 0.3 ; (x=2, t=0): log(1 + e^6)/3 * 0.7.
        # Window 1 is background (label K=2): (x=-1, t=0): log(1 + e^-3)/3 * 0.7 ; (x=0, t=0):
        # log(2)/3 * 0.7. Window 2 is ignored (-1). Normalizer 2.
        logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0], [5.0, 5.0]])
        labels = torch.tensor([0, 2, -1])
        loss = classification_loss(logits, labels, 2, alpha=0.3, gamma=3.0, normalizer=2.0)
        expected = (
            math.log(2) / 3 * 0.3
            + math.log(1 + math.exp(6)) / 3 * 0.7
            + math.log(1 + math.exp(-3)) / 3 * 0.7
            + math.log(2) / 3 * 0.7
        ) / 2
        self.assertAlmostEqual(float(loss), expected, places=5)

    def test_all_background(self):
        logits = torch.zeros(4, 3)
        loss = classification_loss(logits, torch.full((4,), 3), 3, 0.3, 3.0, 1.0)
        self.assertAlmostEqual(float(loss), 12 * math.log(2) / 3 * 0.7, places=5)


class TestBoxLoss(unittest.TestCase):
    def test_l1_hand_computed(self):
        pred = torch.tensor([[0.5, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
        gt = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, -1.0, 0.25]])
        # |.| sums: 0.5 + 1 + 0 + 2 = 3.5 and 1 + 1 + 1 + 0.25 = 3.25; / normalizer 5.
        self.assertAlmostEqual(float(box_regression_loss(pred, gt, 5.0)), 6.75 / 5, places=6)


class TestMaskLoss(unittest.TestCase):
    def test_weighted_bce_hand_computed(self):
        # One 2x2 window of zero logits: BCE = log 2 per pixel, x 1.5 for the foreground pixel.
        # Sum = (1.5 + 3) log 2; weight 2.0 / S^2 = 0.5; normalizer 1 -> 2.25 log 2.
        pred = torch.zeros(1, 2, 2)
        gt = torch.tensor([[[True, False], [False, False]]])
        loss = mask_loss(pred, gt, loss_weight=2.0, pos_weight=1.5, normalizer=1.0)
        self.assertAlmostEqual(float(loss), 2.25 * math.log(2), places=6)

    def test_mean_over_window_pixels_and_sum_over_windows(self):
        # Two windows of different contents: each contributes loss_weight x its pixel mean, the
        # sum is divided by the normalizer. Window 1: logit 2 everywhere, all foreground:
        # 1.5 * log(1 + e^-2) per pixel. Window 2: logit -1, background: log(1 + e^-1).
        pred = torch.stack([torch.full((3, 3), 2.0), torch.full((3, 3), -1.0)])
        gt = torch.stack([torch.ones(3, 3, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool)])
        loss = mask_loss(pred, gt, loss_weight=2.0, pos_weight=1.5, normalizer=4.0)
        expected = 2.0 * (1.5 * math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 4.0
        self.assertAlmostEqual(float(loss), expected, places=5)


if __name__ == "__main__":
    unittest.main()
