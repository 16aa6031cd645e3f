"""
Evaluate a stride-1 convolution only at selected output cells.

BlendMask's top layer is a 3x3 conv with K*M*M (784) output channels applied to every FCOS
location, about 33 GMACs for an 800x1088 input, yet only the attentions of the positive
locations (training) or of the detections kept after NMS (inference, at most 100) are ever
used. Computing exactly those outputs gives the same values for a tiny fraction of the cost.

Shape shorthand: L levels, N images, C input channels, O output channels, P selected cells.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv2d_at_cells"]


def conv2d_at_cells(
    conv: nn.Conv2d,
    features: Sequence[Tensor],
    fpn_levels: Tensor,
    im_inds: Tensor,
    rows: Tensor,
    cols: Tensor,
) -> Tensor:
    """
    Args:
        conv: a ``nn.Conv2d`` with stride 1, dilation 1, groups 1 and zero padding.
        features: L tensors (N, C, Hi, Wi), the conv's input on each level.
        fpn_levels, im_inds, rows, cols: (P,) long, the cells wanted (level, image, row, col).

    Returns:
        (P, O): ``conv(features[l])[n, :, r, c]`` for each cell, in input order.
    """
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"conv2d_at_cells needs stride 1, dilation 1, groups 1; got {conv}")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"conv2d_at_cells needs numeric zero padding; got {conv}")
    kh, kw = conv.kernel_size
    ph, pw = conv.padding
    weight = conv.weight.flatten(1)  # (O, C*kh*kw), channel-major like the patches below
    out = features[0].new_zeros((len(fpn_levels), conv.out_channels))
    dy = torch.arange(kh, device=rows.device)
    dx = torch.arange(kw, device=cols.device)
    for level, feature in enumerate(features):
        sel = torch.nonzero(fpn_levels == level).squeeze(1)
        if sel.numel() == 0:
            continue
        padded = F.pad(feature, (pw, pw, ph, ph))
        # Output (r, c) reads padded input rows r..r+kh-1 and cols c..c+kw-1.
        r = rows[sel][:, None, None] + dy[None, :, None]  # (P_l, kh, 1)
        c = cols[sel][:, None, None] + dx[None, None, :]  # (P_l, 1, kw)
        n = im_inds[sel][:, None, None]
        patches = padded[n, :, r, c]  # (P_l, kh, kw, C): advanced indices first
        patches = patches.permute(0, 3, 1, 2).flatten(1)  # (P_l, C*kh*kw)
        out = out.index_copy(0, sel, F.linear(patches, weight, conv.bias))
    return out
