"""Window geometry: sliding windows, window upsampling / up_align2nat, post-processing."""

import unittest

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.structures import Boxes

from tensormask_proj.layers import swap_align2nat
from tensormask_proj.modeling.tensormask import (
    TensorMaskAnchorGenerator,
    UpAlign2Nat,
    up_align2nat,
    upsample_windows,
)
from tensormask_proj.modeling.tensormask.postprocess import (
    MaskWindows,
    mask_window_boxes,
    paste_mask_windows,
)


class TestAnchorGenerator(unittest.TestCase):
    def test_offset_zero_grid_and_order(self):
        gen = TensorMaskAnchorGenerator(sizes=[[44, 60], [88, 120]], strides=[4, 8])
        windows = gen([(2, 3), (1, 2)])
        self.assertEqual([tuple(w.shape) for w in windows], [(12, 4), (4, 4)])
        # Level 0, row 1, column 2, window id 1: centre (2*4, 1*4) = (8, 4), side 60.
        index = (1 * 3 + 2) * 2 + 1
        self.assertEqual(windows[0][index].tolist(), [8 - 30, 4 - 30, 8 + 30, 4 + 30])
        # Level 1, row 0, column 1, window id 0: centre (8, 0), side 88.
        self.assertEqual(windows[1][(0 * 2 + 1) * 2 + 0].tolist(), [8 - 44, -44, 8 + 44, 44])
        self.assertEqual(windows[0].dtype, torch.float32)
        # The assignment's floor: the smallest window minus the finest unit (official 44 - 4).
        self.assertEqual(gen.min_anchor_size, 40)

    def test_locate_inverts_the_concatenation(self):
        gen = TensorMaskAnchorGenerator(sizes=[[16, 24], [32, 48]], strides=[4, 8])
        grids = [(3, 5), (2, 3)]
        # Index 3*5*2 + (1*3 + 2)*2 + 1 = 41: level 1, row 1, column 2, window id 1.
        levels, ys, xs, a = gen.locate(torch.tensor([0, 41, 29]), grids)
        self.assertEqual(levels.tolist(), [0, 1, 0])
        self.assertEqual(ys.tolist(), [0, 1, 2])
        self.assertEqual(xs.tolist(), [0, 2, 4])
        self.assertEqual(a.tolist(), [0, 1, 1])
        indices = TensorMaskAnchorGenerator.window_indices(levels, ys, xs, a, grids, 2)
        self.assertEqual(indices.tolist(), [0, 41, 29])
        # The boxes of chosen windows are the grid's.
        boxes = TensorMaskAnchorGenerator.windows_at(levels, ys, xs, a, gen.strides, gen.sizes)
        self.assertTrue(torch.equal(boxes, torch.cat(gen(grids))[[0, 41, 29]]))

    def test_bad_sizes_rejected(self):
        with self.assertRaisesRegex(ValueError, "one list of window sizes per level"):
            TensorMaskAnchorGenerator(sizes=[[16]], strides=[4, 8])
        # Level 1 of stride 16 (4 x the finest): windows 4 x those of level 0.
        message = r"SIZES\[1\] = \[32\] must be SIZES\[0\] \* 4 = \[64\]"
        with self.assertRaisesRegex(ValueError, message):
            TensorMaskAnchorGenerator(sizes=[[16], [32]], strides=[4, 16])
        with self.assertRaisesRegex(ValueError, "ASPECT_RATIOS must be"):
            TensorMaskAnchorGenerator(sizes=[[16]], strides=[4], aspect_ratios=[[0.5, 1.0]])
        self.assertEqual(TensorMaskAnchorGenerator.window_cells([[44, 60]], [4]), [11, 15])
        with self.assertRaisesRegex(ValueError, "multiples of the finest stride 4"):
            TensorMaskAnchorGenerator.window_cells([[18]], [4])


class TestUpsampleWindows(unittest.TestCase):
    def test_bilinear_by_two_hand_computed(self):
        # A 2x2 window [[0, 4], [8, 12]] upsampled to 4x4 (align_corners=False): 1-D weights of
        # output cell v from (v + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]:
        # rows -> [0, 0.25, 0.75, 1] between the two input rows.
        x = torch.tensor([0.0, 4.0, 8.0, 12.0]).view(1, 4, 1, 1)
        out = upsample_windows(x, 4, "bilinear").view(4, 4)
        row_w = torch.tensor([0.0, 0.25, 0.75, 1.0])
        expected = (row_w[:, None] * 8) + (row_w[None, :] * 4)
        torch.testing.assert_close(out, expected)

    def test_nearest_is_centre_aligned_for_non_integer_factor(self):
        # 2 -> 3 cells (lambda 1.5): cell v reads floor((v + 0.5) * 2 / 3) = 0, 1, 1.
        x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
        out = upsample_windows(x, 3, "nearest").view(3, 3)
        expected = torch.tensor([[1.0, 2, 2], [3, 4, 4], [3, 4, 4]])
        torch.testing.assert_close(out, expected)

    def test_matches_interpolate_on_window_axes(self):
        x = torch.randn(2, 25, 3, 4, dtype=torch.float64)
        out = upsample_windows(x, 15, "bilinear")  # lambda 3
        ref = torch.nn.functional.interpolate(
            x.permute(0, 2, 3, 1).reshape(-1, 1, 5, 5),
            size=(15, 15),
            mode="bilinear",
            align_corners=False,
        )
        ref = ref.reshape(2, 3, 4, 225).permute(0, 3, 1, 2)
        torch.testing.assert_close(out, ref)

    def test_up_align2nat_is_upsample_then_align2nat(self):
        x = torch.randn(1, 100, 6, 7)  # 10x10 windows -> 15x15 (lambda 1.5)
        out = up_align2nat(x, 15, "bilinear")
        torch.testing.assert_close(out, swap_align2nat(upsample_windows(x, 15, "bilinear"), 1))
        self.assertEqual(tuple(out.shape), (1, 225, 6, 7))
        self.assertIn("out_side=15", repr(UpAlign2Nat(15)))

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "perfect"):
            upsample_windows(torch.zeros(1, 5, 2, 2), 4)
        with self.assertRaisesRegex(ValueError, "mode"):
            upsample_windows(torch.zeros(1, 4, 2, 2), 4, "cubic")


def corners(box_mask):
    """The four corner pixels of a rectangular mask."""
    ys, xs = torch.nonzero(box_mask, as_tuple=True)
    out = torch.zeros_like(box_mask)
    for y in (ys.min(), ys.max()):
        for x in (xs.min(), xs.max()):
            out[y, x] = True
    return out


class TestPostprocess(unittest.TestCase):
    def test_mask_window_boxes_hand_computed(self):
        windows = [torch.full((4, 4), -1.0) for _ in range(3)] + [torch.full((6, 6), -1.0)]
        windows[0][1, 2] = 1.0
        windows[0][2, 3] = 0.0  # logit 0 = probability 0.5: foreground
        windows[2][:] = 1.0
        windows[3][5, 0] = 2.0
        boxes = torch.tensor([[0.0, 0, 40, 40], [10, 10, 50, 50], [-8, 0, 8, 16], [0, 0, 60, 60]])
        # Window 0: 10 px cells, rows 1..2 and columns 2..3 -> [20, 10, 40, 30]. Window 1 is
        # empty -> zero-size box at its centre. Window 2 is full -> its box. Window 3: 10 px
        # cells, row 5, column 0 -> [0, 50, 10, 60].
        expected = [[20, 10, 40, 30], [30, 30, 30, 30], [-8, 0, 8, 16], [0, 50, 10, 60]]
        self.assertEqual(mask_window_boxes(windows, boxes).tolist(), expected)

    def test_paste_into_scaled_window_boxes(self):
        # Two windows of different sizes, all foreground, pasted into their window boxes scaled
        # by (2, 0.5) into a 20 x 40 output: inside the scaled box, everything but the corner
        # pixels (bilinear pasting with zeros outside the window: 0.625^2 * p < 0.5 there).
        windows = MaskWindows([torch.full((2, 2), 5.0), torch.full((3, 3), 5.0)])
        boxes = Boxes(torch.tensor([[2.0, 4, 6, 12], [-4, 20, 10, 60]]))
        masks = paste_mask_windows(windows, boxes, (2.0, 0.5), (20, 40))
        self.assertEqual((masks.shape, masks.dtype), ((2, 20, 40), torch.bool))
        box0 = torch.zeros(20, 40, dtype=torch.bool)
        box0[2:6, 4:12] = True  # scaled box [4, 2, 12, 6]
        self.assertTrue(torch.equal(masks[0], box0 & ~corners(box0)))
        # Scaled box [-8, 10, 20, 30], clipped by the image on two sides.
        box1 = torch.zeros(20, 40, dtype=torch.bool)
        box1[10:20, 0:20] = True
        self.assertFalse(bool((masks[1] & ~box1).any()))
        self.assertGreaterEqual(int(masks[1].sum()), 200 - 20)
        # Same as detectron2's paste of each window alone.
        window = torch.full((1, 3, 3), 5.0).sigmoid()
        one = paste_masks_in_image(window, torch.tensor([[-8.0, 10, 20, 30]]), (20, 40))
        self.assertTrue(torch.equal(masks[1], one[0]))
        empty = paste_mask_windows(MaskWindows([]), Boxes(torch.zeros(0, 4)), (1, 1), (5, 6))
        self.assertEqual((empty.shape, empty.dtype), ((0, 5, 6), torch.bool))

    def test_mask_windows_container(self):
        windows = MaskWindows([torch.zeros(2, 2), torch.ones(3, 3), torch.zeros(4, 4)])
        self.assertEqual(len(windows[torch.tensor([True, False, True])]), 2)
        self.assertEqual(windows[torch.tensor([1])].windows[0].shape, (3, 3))
        self.assertEqual(len(MaskWindows.cat([windows, windows[1:]])), 5)


if __name__ == "__main__":
    unittest.main()
