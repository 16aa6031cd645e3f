"""
Sliding windows ("anchors") of TensorMask.

Shape shorthand / naming:
    L: number of levels, l: level index (0 = finest), s_l: stride of level l,
    A: windows per position (one per size; aspect ratio 1 only), a: window (anchor) id,
    H_l, W_l: grid of level l, R = sum_l H_l * W_l * A: all windows of an image.

Every position (i, j) of level l carries A square windows centred on (x, y) = (j * s_l, i * s_l):
the grid has offset 0 (the top-left corner of the feature cell, as in the official code), so a
window may extend past the image. Window a of level l is the box of side ``sizes[l][a]``.
Windows are ordered (H_l, W_l, A) row-major within a level and levels are concatenated finest
first, the order of ``permute_to_N_HWA_K``. The *unit length* of a window (paper §3.1, used by the
assignment rule) is the stride of its level.

The windows are the same for all images, are cheap to compute and are not stored: the module has
no state (older checkpoints' ``anchor_generator.cell_anchors.*`` entries are ignored on load).
"""

from typing import List, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import nn

__all__ = ["TensorMaskAnchorGenerator"]


class TensorMaskAnchorGenerator(nn.Module):
    """Square sliding windows on an offset-0 grid, A sizes per level."""

    @configurable
    def __init__(self, *, sizes: Sequence[Sequence[float]], strides: Sequence[int]):
        """
        Args:
            sizes: ``sizes[l]`` lists the A window sides (pixels) of level l.
            strides: stride s_l of each level.
        """
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES has {len(sizes)} levels but the head sees "
                f"{len(strides)} feature maps (strides {list(strides)}); give one list per level"
            )
        num = {len(s) for s in sizes}
        if len(num) != 1:
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES must give the same number of sizes on every level, "
                f"got {[list(s) for s in sizes]}"
            )
        self.sizes = [[float(x) for x in s] for s in sizes]
        self.strides = [int(s) for s in strides]

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "strides": [x.stride for x in input_shape],
        }

    @property
    def num_anchors(self) -> int:
        """A, the number of windows per position (same on every level)."""
        return len(self.sizes[0])

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def grid_windows(self, level: int, height: int, width: int, device=None) -> torch.Tensor:
        """
        Args:
            level (int): l.
            height, width (int): grid size H_l, W_l.

        Returns:
            Tensor[H_l * W_l * A, 4]: XYXY windows of level l, float32, order (H, W, A).
        """
        stride = self.strides[level]
        # Same arithmetic as detectron2's DefaultAnchorGenerator with offset 0 (float32 shifts
        # plus centred cell boxes), so the boxes are bit-identical to the official ones.
        shift_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
        shift_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        half = torch.tensor(self.sizes[level], dtype=torch.float32, device=device) / 2
        cell = torch.stack([-half, -half, half, half], dim=1)  # (A, 4)
        return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)

    def forward(self, grid_sizes: List[Tuple[int, int]], device=None) -> List[torch.Tensor]:
        """
        Args:
            grid_sizes: (H_l, W_l) of every level.

        Returns:
            list[Tensor[H_l * W_l * A, 4]]: the windows of every level (see :meth:`grid_windows`).
        """
        return [self.grid_windows(level, h, w, device) for level, (h, w) in enumerate(grid_sizes)]

    @staticmethod
    def level_offsets(grid_sizes: List[Tuple[int, int]], num_anchors: int) -> List[int]:
        """Index of the first window of every level in the concatenation of all levels (L+1)."""
        offsets = [0]
        for h, w in grid_sizes:
            offsets.append(offsets[-1] + h * w * num_anchors)
        return offsets

    def locate(self, indices: torch.Tensor, grid_sizes: List[Tuple[int, int]]):
        """
        Decompose indices into the concatenation of all levels' windows.

        Args:
            indices (Tensor[n], int64): window indices in [0, R).
            grid_sizes: (H_l, W_l) of every level.

        Returns:
            levels, ys, xs, anchor_ids (Tensor[n] each, int64): level, grid row, grid column and
            window id of every index.
        """
        a = self.num_anchors
        offsets = torch.tensor(self.level_offsets(grid_sizes, a), device=indices.device)
        levels = torch.searchsorted(offsets, indices, right=True) - 1
        local = indices - offsets[levels]
        widths = torch.tensor([w for _, w in grid_sizes], device=indices.device)[levels]
        position = local // a
        return levels, position // widths, position % widths, local % a
