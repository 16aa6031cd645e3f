"""The top layer evaluated only at selected cells equals the dense convolution."""

import unittest

import torch
from torch import nn

from tensormask_proj.modeling.blendmask.sparse_conv import conv2d_at_cells


class TestConvAtCells(unittest.TestCase):
    def test_equals_dense_conv_values_and_grads(self):
        torch.manual_seed(0)
        conv = nn.Conv2d(5, 7, 3, padding=1).double()
        feats = [
            torch.randn(2, 5, 6, 9, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 5, 3, 5, dtype=torch.float64, requires_grad=True),
        ]
        # Cells on every border and corner, on both levels and images, with a repeat.
        cells = [(0, 0, 0, 0), (0, 1, 5, 8), (1, 0, 2, 4), (0, 1, 3, 0), (1, 1, 0, 2), (0, 0, 0, 0)]
        levels, ims, rows, cols = (torch.tensor(c) for c in zip(*cells))
        sparse = conv2d_at_cells(conv, feats, levels, ims, rows, cols)
        dense = [conv(f) for f in feats]
        expected = torch.stack([dense[lv][n, :, r, c] for lv, n, r, c in cells])
        self.assertTrue(torch.allclose(sparse, expected, atol=1e-12))

        weights = torch.randn_like(expected)
        grads_sparse = torch.autograd.grad((sparse * weights).sum(), feats + [conv.weight])
        grads_dense = torch.autograd.grad((expected * weights).sum(), feats + [conv.weight])
        for a, b in zip(grads_sparse, grads_dense):
            self.assertTrue(torch.allclose(a, b, atol=1e-12))

    def test_empty_and_bad_conv(self):
        conv = nn.Conv2d(3, 4, 3, padding=1)
        empty = torch.zeros(0, dtype=torch.long)
        out = conv2d_at_cells(conv, [torch.randn(1, 3, 4, 4)], empty, empty, empty, empty)
        self.assertEqual(out.shape, (0, 4))
        with self.assertRaisesRegex(ValueError, "stride 1"):
            conv2d_at_cells(nn.Conv2d(3, 4, 3, stride=2), [torch.randn(1, 3, 4, 4)], *[empty] * 4)


if __name__ == "__main__":
    unittest.main()
