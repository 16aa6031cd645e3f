"""FCOS locations and target assignment on hand-made cases."""

import math
import unittest

import torch
from detectron2.structures import Boxes, Instances
from torch import nn

from tensormask_proj.modeling.blendmask.fcos import FCOS
from tensormask_proj.modeling.blendmask.fcos_targets import (
    INF,
    compute_ctrness_targets,
    compute_locations,
    level_size_ranges,
    locations_to_cells,
    match_locations,
)


def _single_level(locations, stride, lo=-1.0, hi=INF):
    n = len(locations)
    return torch.full((n,), float(stride)), torch.tensor([[lo, hi]]).expand(n, 2)


class TestLocations(unittest.TestCase):
    def test_compute_locations(self):
        # Level of stride 8 with 2x3 cells: x = j*8 + 4, y = i*8 + 4, row-major.
        feats = [torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 1)]
        loc8, loc16 = compute_locations(feats, [8, 16])
        expected = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
        self.assertEqual(loc8.tolist(), expected)
        self.assertEqual(loc16.tolist(), [[8, 8]])

    def test_locations_to_cells_inverts_compute_locations(self):
        feats = [torch.zeros(1, 1, 5, 7), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 2, 2)]
        strides = [8, 16, 32]
        locs = compute_locations(feats, strides)
        for level, (loc, f) in enumerate(zip(locs, feats)):
            rows, cols = locations_to_cells(loc, torch.full((len(loc),), level), strides)
            w = f.shape[-1]
            flat = torch.arange(len(loc))
            self.assertTrue(torch.equal(rows, flat // w))
            self.assertTrue(torch.equal(cols, flat % w))

    def test_size_ranges(self):
        self.assertEqual(
            level_size_ranges([64, 128, 256, 512]),
            [(-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, INF)],
        )


class TestMatchLocations(unittest.TestCase):
    def test_center_sampling_radius_is_strict(self):
        # 4x4 cells of stride 8: x, y in {4, 12, 20, 28}. gt [0, 0, 32, 32], centre (16, 16).
        # Radius 1.5 * 8 = 12: |x - 16| < 12 keeps x in {12, 20}; x = 4 and 28 are exactly 12
        # away and must be rejected (strict inequality).
        locs = compute_locations([torch.zeros(1, 1, 4, 4)], [8])[0]
        strides, ranges = _single_level(locs, 8)
        gt = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
        matched, ltrb = match_locations(locs, strides, ranges, gt, 1.5)
        positives = {tuple(p) for p in locs[matched >= 0].tolist()}
        self.assertEqual(positives, {(12, 12), (20, 12), (12, 20), (20, 20)})
        # (12, 20): l* = 12, t* = 20, r* = 20, b* = 12 pixels.
        i = locs.tolist().index([12, 20])
        self.assertEqual(ltrb[i].tolist(), [12, 20, 20, 12])

        # Without centre sampling every location strictly inside the box is positive
        # (x = 28 is 4 px from the right side).
        matched, _ = match_locations(locs, strides, ranges, gt, None)
        self.assertTrue(bool((matched == 0).all()))

    def test_center_region_is_intersected_with_box(self):
        # A thin box: the sampling square around (16, 10) is [4, 28] x [-2, 22] but the box is
        # only y in [8, 12]: location y = 12 is on the box border, so not strictly inside.
        locs = torch.tensor([[12.0, 12.0], [12.0, 10.0]])
        strides, ranges = _single_level(locs, 8)
        gt = torch.tensor([[0.0, 8.0, 32.0, 12.0]])
        matched, _ = match_locations(locs, strides, ranges, gt, 1.5)
        self.assertEqual(matched.tolist(), [-1, 0])

    def test_size_range_is_inclusive_at_both_ends(self):
        # gt [0, 0, 68, 20] seen from (4, 4): l*=4, t*=4, r*=64, b*=16, max = 64: it belongs to
        # both the [-1, 64] level and the [64, 128] level. From (3, 4): r* = 65, only the second.
        gt = torch.tensor([[0.0, 0.0, 68.0, 20.0]])
        locs = torch.tensor([[4.0, 4.0], [4.0, 4.0], [3.0, 4.0], [3.0, 4.0]])
        strides = torch.tensor([8.0, 16.0, 8.0, 16.0])
        ranges = torch.tensor([[-1.0, 64.0], [64.0, 128.0], [-1.0, 64.0], [64.0, 128.0]])
        matched, ltrb = match_locations(locs, strides, ranges, gt, None)
        self.assertEqual(matched.tolist(), [0, 0, -1, 0])
        self.assertEqual(ltrb[0].tolist(), [4, 4, 64, 16])

    def test_smallest_area_wins_and_ties_take_first(self):
        loc = torch.tensor([[10.0, 10.0]])
        strides, ranges = _single_level(loc, 8)
        # Areas 1600 and 225: the smaller one (index 1) wins.
        gt = torch.tensor([[0.0, 0.0, 40.0, 40.0], [5.0, 5.0, 20.0, 20.0]])
        matched, ltrb = match_locations(loc, strides, ranges, gt, None)
        self.assertEqual(matched.tolist(), [1])
        self.assertEqual(ltrb.tolist(), [[5, 5, 10, 10]])
        # Equal areas (400): the first gt wins, whatever the order of the others.
        gt = torch.tensor([[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 20.0, 20.0], [2.0, 2.0, 22.0, 22.0]])
        matched, _ = match_locations(loc, strides, ranges, gt, None)
        self.assertEqual(matched.tolist(), [1])

    def test_no_gt(self):
        locs = compute_locations([torch.zeros(1, 1, 3, 3)], [8])[0]
        strides, ranges = _single_level(locs, 8)
        matched, ltrb = match_locations(locs, strides, ranges, torch.zeros(0, 4), 1.5)
        self.assertEqual(matched.tolist(), [-1] * 9)
        self.assertEqual(ltrb.shape, (9, 4))

    def test_ctrness_targets(self):
        # (l, t, r, b) = (1, 2, 3, 4): sqrt(1/3 * 2/4) = sqrt(1/6).
        c = compute_ctrness_targets(torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]]))
        self.assertAlmostEqual(c[0].item(), math.sqrt(1 / 6), places=6)
        self.assertAlmostEqual(c[1].item(), 1.0, places=6)
        self.assertEqual(compute_ctrness_targets(torch.zeros(0, 4)).shape, (0,))


class TestFCOSLabels(unittest.TestCase):
    def test_label_locations_over_levels_and_images(self):
        fcos = FCOS(
            head=nn.Identity(),
            in_features=["p3", "p4"],
            strides=[8, 16],
            num_classes=3,
            sizes_of_interest=[16],
            center_sample=True,
            pos_radius=1.5,
        )
        # Level p3: 4x4 cells (x, y in 4, 12, 20, 28); level p4: 2x2 cells (8, 24).
        feats = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
        locations = compute_locations(feats, fcos.strides)
        img0 = Instances((32, 32))
        img0.gt_boxes = Boxes(torch.zeros(0, 4))
        img0.gt_classes = torch.zeros(0, dtype=torch.long)
        img1 = Instances((32, 32))
        # gt 0 (class 2): small box around (12, 12), max distance 4 -> level p3 only.
        # gt 1 (class 1): [0, 0, 32, 32]; from p4's (8, 8) max distance 24 -> in p4's [16, INF];
        # on p3 every inside location has max distance >= 20 > 16 -> not on p3.
        img1.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0]]))
        img1.gt_classes = torch.tensor([2, 1])
        labels, reg, gt_inds, level_of = fcos.label_locations(locations, [img0, img1])
        self.assertEqual(labels.shape, (2, 20))
        self.assertEqual(level_of.tolist(), [0] * 16 + [1] * 4)
        self.assertTrue(bool((labels[0] == 3).all()))
        self.assertTrue(bool((gt_inds[0] == -1).all()))
        # p3 location (12, 12) is index 5 -> gt 0 (global index 0 + 0 gts of image 0).
        self.assertEqual(labels[1, 5].item(), 2)
        self.assertEqual(gt_inds[1, 5].item(), 0)
        # Distances 4 px at stride 8 -> 0.5 in stride units.
        self.assertEqual(reg[1, 5].tolist(), [0.5, 0.5, 0.5, 0.5])
        self.assertEqual(int((labels[1, :16] != 3).sum()), 1)
        # p4: centre (16, 16), radius 24: all four cells (8|24, 8|24) are positives of gt 1.
        self.assertEqual(labels[1, 16:].tolist(), [1, 1, 1, 1])
        self.assertEqual(gt_inds[1, 16:].tolist(), [1, 1, 1, 1])
        # (8, 8): l* = t* = 8, r* = b* = 24 pixels -> 0.5, 1.5 strides of 16.
        self.assertEqual(reg[1, 16].tolist(), [0.5, 0.5, 1.5, 1.5])


if __name__ == "__main__":
    unittest.main()
