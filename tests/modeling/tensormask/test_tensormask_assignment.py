"""The label assignment rule on hand-made boxes, and against a direct (dense) implementation."""

import unittest

import torch

from tensormask_proj.modeling.tensormask import TensorMaskAnchorGenerator, assign_windows

K = 6
# Two levels: stride 8 with 32 px windows on an 8x8 grid, stride 16 with 64 px windows on 4x4.
# min_anchor_size = 32 - 8 = 24 (smallest window minus the finest unit, as the official rule).
STRIDES = [8, 16]
SIZES = [[32], [64]]
GRIDS = [(8, 8), (4, 4)]
MIN_SIZE = 24


def assign(boxes, classes=None, **kwargs):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    if classes is None:
        classes = list(range(len(boxes)))
    classes = torch.tensor(classes, dtype=torch.int64)
    return assign_windows(boxes, classes, GRIDS, STRIDES, SIZES, K, MIN_SIZE, **kwargs)


def index(level, i, j):
    # Windows are ordered level, row, column (one window per position here).
    return (0 if level == 0 else 64) + i * GRIDS[level][1] + j


def dense_rule(gt_boxes, windows, units, min_size, scale_thresh=2.0, spatial_thresh=1.0):
    """The official formulation: every box against every window (G x R matrices)."""
    g = gt_boxes[:, None, :]
    m = windows[None, :, :]
    contained = (m[..., 0] <= g[..., 0]) & (m[..., 1] <= g[..., 1])
    contained &= (m[..., 2] >= g[..., 2]) & (m[..., 3] >= g[..., 3])
    side = (windows[:, 2:] - windows[:, :2]).max(dim=1).values
    gt_side = (gt_boxes[:, 2:] - gt_boxes[:, :2]).max(dim=1).values
    upper = torch.clamp(scale_thresh * gt_side, min=min_size)
    scale = (side - units)[None, :] <= upper[:, None]
    gc = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    mc = (windows[:, :2] + windows[:, 2:]) / 2
    dist = (((gc[:, None, :] - mc[None, :, :]) / units[None, :, None]) ** 2).sum(-1)
    cand = contained & scale & (dist <= spatial_thresh)
    count = cand.sum(0)
    positive = count == 1
    matched = cand.to(torch.int64).argmax(0)
    return positive, matched, count


class TestAssignmentRule(unittest.TestCase):
    def test_centrality_picks_the_four_nearest_positions(self):
        # 16x16 box centred at (28, 28) = (3.5, 3.5) strides: the 4 positions at distance^2 0.5
        # contain it; (2, 3) is at 1.5^2 + 0.5^2 = 2.5 > 1. Scale: 32 - 8 = 24 <= max(32, 24).
        # Level 1: 64 - 16 = 48 > 32, too large.
        t = assign([[20, 20, 36, 36]], [4])
        expected = [index(0, 3, 3), index(0, 3, 4), index(0, 4, 3), index(0, 4, 4)]
        self.assertEqual(t.pos_indices.tolist(), expected)
        self.assertEqual(t.pos_gt.tolist(), [0, 0, 0, 0])
        self.assertEqual(t.gt_labels[expected].tolist(), [4] * 4)
        self.assertEqual(int((t.gt_labels != K).sum()), 4)

    def test_containment(self):
        # 30x30 box [10, 40]^2, centre (25, 25) = 3.125 strides: only the window centred at
        # (24, 24), [8, 40]^2, contains it (the one at x = 32 starts at 16 > 10). On level 1
        # (upper = 60 >= 48) the windows centred at (16|32, 16|32) all contain it and are within
        # one stride (distance^2 0.63, 0.51, 0.51, 0.38).
        t = assign([[10, 10, 40, 40]])
        expected = [index(0, 3, 3), index(1, 1, 1), index(1, 1, 2), index(1, 2, 1), index(1, 2, 2)]
        self.assertEqual(t.pos_indices.tolist(), expected)

    def test_scale_floor_for_small_objects(self):
        # A 4x4 box: 2 * 4 = 8 < 24, floored at min_anchor_size 24 >= 32 - 8: still assigned on
        # level 0 (the paper's fallback); its centre (28, 28) gives the same 4 positions.
        t = assign([[26, 26, 30, 30]])
        self.assertEqual(t.pos_indices.numel(), 4)
        # Without the floor (min size 0) nothing is large enough: 8 < 24.
        boxes = torch.tensor([[26.0, 26, 30, 30]])
        t = assign_windows(boxes, torch.tensor([0]), GRIDS, STRIDES, SIZES, K, 0)
        self.assertEqual(t.pos_indices.numel(), 0)

    def test_scale_too_small_object_for_large_windows(self):
        # 12x12 box: upper = max(24, 24) = 24 < 48, so no level-1 window; level 0 only.
        t = assign([[22, 22, 34, 34]])
        self.assertTrue(bool((t.pos_indices < 64).all()))
        self.assertEqual(t.pos_indices.numel(), 4)

    def test_uniqueness(self):
        # Two 16x16 boxes centred at (28, 28) and (36, 28): positions (3|4, 4) are candidates for
        # both (containment and centrality hold for each), so they become negatives; each box
        # keeps the positions only it can claim.
        t = assign([[20, 20, 36, 36], [28, 20, 44, 36]], [1, 2])
        shared = {index(0, 3, 4), index(0, 4, 4)}
        self.assertTrue(shared.isdisjoint(t.pos_indices.tolist()))
        self.assertEqual(
            dict(zip(t.pos_indices.tolist(), t.pos_gt.tolist())),
            {index(0, 3, 3): 0, index(0, 4, 3): 0, index(0, 3, 5): 1, index(0, 4, 5): 1},
        )
        self.assertEqual(t.gt_labels[sorted(shared)].tolist(), [K, K])
        # Without uniqueness the shared windows are ignored instead.
        t = assign([[20, 20, 36, 36], [28, 20, 44, 36]], [1, 2], uniqueness_on=False)
        self.assertEqual(t.gt_labels[sorted(shared)].tolist(), [-1, -1])

    def test_image_without_ground_truth(self):
        t = assign(torch.zeros(0, 4).tolist())
        self.assertEqual(t.gt_labels.shape, (64 + 16,))
        self.assertTrue(bool((t.gt_labels == K).all()))
        self.assertEqual(t.pos_indices.numel(), 0)
        self.assertEqual(t.pos_gt.numel(), 0)

    def test_equals_the_dense_rule_on_random_boxes(self):
        gen = TensorMaskAnchorGenerator(
            sizes=[[16, 24], [32, 48], [64, 96], [128, 192]], strides=[4, 8, 16, 32]
        )
        grids = [(32, 40), (16, 20), (8, 10), (4, 5)]
        windows = torch.cat(gen(grids))
        units = torch.cat(
            [torch.full((h * w * 2,), float(s)) for (h, w), s in zip(grids, gen.strides)]
        )
        g = torch.Generator().manual_seed(0)
        for trial in range(5):
            n = 12
            xy = torch.rand(n, 2, generator=g) * torch.tensor([160.0, 128.0])
            wh = torch.rand(n, 2, generator=g) * 90 + 2
            # Quantised to quarter pixels so that ties on the comparisons occur.
            boxes = (torch.cat([xy, xy + wh], 1) * 4).round() / 4
            classes = torch.randint(0, K, (n,), generator=g)
            t = assign_windows(boxes, classes, grids, gen.strides, gen.sizes, K, 12)
            positive, matched, count = dense_rule(boxes, windows, units, 12)
            self.assertEqual(t.pos_indices.tolist(), torch.nonzero(positive).flatten().tolist())
            self.assertEqual(t.pos_gt.tolist(), matched[positive].tolist())
            labels = torch.full((len(windows),), K, dtype=torch.int64)
            labels[positive] = classes[matched[positive]]
            self.assertTrue(torch.equal(t.gt_labels, labels))
            self.assertGreater(int(positive.sum()), 0)


if __name__ == "__main__":
    unittest.main()
