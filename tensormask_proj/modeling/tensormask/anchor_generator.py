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

This module holds all of the windows' geometry, so that the model, the label assignment and the
exported model compute it once: the boxes (:meth:`~TensorMaskAnchorGenerator.grid_windows`, and
:meth:`~TensorMaskAnchorGenerator.windows_at` for chosen windows) and the flattened order
(:meth:`~TensorMaskAnchorGenerator.level_offsets`, ``window_indices`` and its inverse ``locate``).
"""

from typing import List, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import nn

__all__ = ["TensorMaskAnchorGenerator"]


class TensorMaskAnchorGenerator(nn.Module):
    """Square sliding windows on an offset-0 grid, A sizes per level."""

    @configurable
    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        strides: Sequence[int],
        aspect_ratios: Sequence[Sequence[float]] = ((1.0,),),
    ):
        """
        Args:
            sizes: ``sizes[l]`` lists the A window sides (pixels) of level l; the sides of
                level l are those of level 0 times s_l / s_0.
            strides: stride s_l of each level.
            aspect_ratios: only [[1.0]] (or [1.0] per level): square windows, one per size.
        """
        super().__init__()
        if any(list(r) != [1.0] for r in aspect_ratios):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS must be [[1.0]] for TensorMask (square "
                f"windows, one per size), got {aspect_ratios}"
            )
        if len(sizes) != len(strides):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES must give one list of window sizes per level of "
                f"MODEL.TENSOR_MASK.IN_FEATURES ({len(strides)}, strides {list(strides)}), got "
                f"{len(sizes)}: {sizes}"
            )
        # Window a is then S_a cells of its level's stride on every level: the mask heads predict
        # one window side per window id, and the bipyramid's level-l windows are S_a * s_l / s_0
        # cells of the finest stride.
        for level, (level_sizes, stride) in enumerate(zip(sizes, strides)):
            ratio = stride / strides[0]
            expected = [float(s) * ratio for s in sizes[0]]
            if [float(s) for s in level_sizes] != expected:
                shown = ", ".join(f"{e:g}" for e in expected)
                raise ValueError(
                    f"MODEL.ANCHOR_GENERATOR.SIZES[{level}] = {list(level_sizes)} must be "
                    f"SIZES[0] * {ratio:g} = [{shown}] (window sizes per level scale with the "
                    f"stride, strides {list(strides)})"
                )
        self.sizes = [[float(x) for x in s] for s in sizes]
        self.strides = [int(s) for s in strides]

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "strides": [x.stride for x in input_shape],
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
        }

    @staticmethod
    def window_cells(sizes: Sequence[Sequence[float]], strides: Sequence[int]) -> List[int]:
        """
        S_a: the side of window a in cells of its level's stride (the same on every level), the
        side of its natural mask window (official: ``SIZES[0][a] // s_0``).

        Raises:
            ValueError: where a side is not a whole number of cells (the official code floors
                it, and the mask windows would not tile their window boxes).
        """
        sizes0, stride0 = sizes[0], strides[0]
        if any(int(s) != s or int(s) % stride0 for s in sizes0):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES[0] = {list(sizes0)} must be multiples of the finest "
                f"stride {stride0} (window side V = size / stride, in cells)"
            )
        return [int(s) // stride0 for s in sizes0]

    @property
    def num_anchors(self) -> int:
        """A, the number of windows per position (same on every level)."""
        return len(self.sizes[0])

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def min_anchor_size(self) -> float:
        """
        Floor of the label assignment's scale condition (official): the smallest window minus
        one unit of the finest level (44 - 4 = 40).
        """
        return min(self.sizes[0]) - self.strides[0]

    def grid_windows(self, level: int, height: int, width: int, device=None) -> torch.Tensor:
        """
        Args:
            level (int): l.
            height, width (int): grid size H_l, W_l.

        Returns:
            Tensor[H_l * W_l * A, 4]: XYXY windows of level l, float32, order (H, W, A).
        """
        ys, xs, anchor_ids = torch.meshgrid(
            torch.arange(height, device=device),
            torch.arange(width, device=device),
            torch.arange(self.num_anchors, device=device),
            indexing="ij",
        )
        ys, xs, anchor_ids = ys.reshape(-1), xs.reshape(-1), anchor_ids.reshape(-1)
        levels = torch.full_like(ys, level)
        return self.windows_at(levels, ys, xs, anchor_ids, self.strides, self.sizes)

    @staticmethod
    def windows_at(
        levels: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        anchor_ids: torch.Tensor,
        strides: Sequence[int],
        sizes: Sequence[Sequence[float]],
    ) -> torch.Tensor:
        """
        The windows at given grid positions: the one computation of window boxes (the grid's
        and the label assignment's, which only enumerates windows near the objects).

        Args:
            levels, ys, xs, anchor_ids (Tensor[n], int64): level, grid row, grid column and
                window id of every window.
            strides, sizes: see :meth:`__init__` (static, for callers holding only these).

        Returns:
            Tensor[n, 4]: XYXY windows, float32.
        """
        device = ys.device
        stride = torch.tensor(strides, device=device)[levels]
        half = torch.tensor(sizes, dtype=torch.float32, device=device)[levels, anchor_ids] / 2
        # Same arithmetic as detectron2's DefaultAnchorGenerator with offset 0 (exact float32
        # shifts, then +- half the side), so the boxes are bit-identical to the official ones.
        shift_x = (xs * stride).to(torch.float32)
        shift_y = (ys * stride).to(torch.float32)
        return torch.stack([shift_x - half, shift_y - half, shift_x + half, shift_y + half], dim=1)

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
        """
        Index of the first window of every level in the concatenation of all levels (L+1
        entries, the last one R). The sizes may be traced 0-dim tensors (``torch.jit.trace``
        records the shapes so); the offsets are then too.
        """
        offsets = [0]
        for h, w in grid_sizes:
            offsets.append(offsets[-1] + h * w * num_anchors)
        return offsets

    @staticmethod
    def window_indices(
        levels: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        anchor_ids: torch.Tensor,
        grid_sizes: List[Tuple[int, int]],
        num_anchors: int,
    ) -> torch.Tensor:
        """
        Indices into the concatenation of all levels' windows: the inverse of :meth:`locate`.

        Args:
            levels, ys, xs, anchor_ids (Tensor[n], int64): see :meth:`locate`.
            grid_sizes: (H_l, W_l) of every level.
            num_anchors (int): A.

        Returns:
            Tensor[n], int64.
        """
        device = levels.device
        starts = _index_tensor(TensorMaskAnchorGenerator.level_offsets(grid_sizes, num_anchors))
        widths = _index_tensor([w for _, w in grid_sizes])
        position = ys * widths.to(device)[levels] + xs
        return starts.to(device)[levels] + position * num_anchors + anchor_ids

    def locate(self, indices: torch.Tensor, grid_sizes: List[Tuple[int, int]]):
        """
        Decompose indices into the concatenation of all levels' windows. Traceable (the
        exported model uses it): the grid sizes may be traced 0-dim tensors.

        Args:
            indices (Tensor[n], int64): window indices in [0, R).
            grid_sizes: (H_l, W_l) of every level.

        Returns:
            levels, ys, xs, anchor_ids (Tensor[n] each, int64): level, grid row, grid column and
            window id of every index.
        """
        a = self.num_anchors
        device = indices.device
        offsets = _index_tensor(self.level_offsets(grid_sizes, a)).to(device)
        widths = _index_tensor([w for _, w in grid_sizes]).to(device)
        # A comparison with every level's end rather than searchsorted, which ONNX lacks.
        levels = (indices[:, None] >= offsets[None, 1:]).sum(dim=1)
        local = indices - offsets[levels]
        position = local // a
        width = widths[levels]
        return levels, position // width, position % width, local % a


def _index_tensor(values: Sequence) -> torch.Tensor:
    """
    Ints, or traced 0-dim tensors when tracing, as one int64 tensor; ``torch.tensor`` would
    record traced values as constants.
    """
    if not any(isinstance(v, torch.Tensor) for v in values):
        return torch.tensor(values, dtype=torch.int64)
    return torch.stack([torch.as_tensor(v, dtype=torch.int64) for v in values])
