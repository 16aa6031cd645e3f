"""
Natural mask windows computed only at requested positions ("sparse windows").

Shape shorthand / naming:
    n: requested windows, l: level, lambda_l: stride ratio of level l to the finest level,
    H0, W0: finest grid, H_l, W_l: level l's grid, S: finest window side, S_out: natural side.
    A *region* is an inclusive rectangle (r0, r1, c0, c1) of grid cells.

The official head computes every window of every level (about 450 MB of op output for an
800 px image) and keeps about 100 at inference; training uses only the positive windows. Every
step of the mask branch is local, so a window depends only on a small neighbourhood:

* ``swap_align2nat`` at output (y, x) reads the aligned map in rows
  [y*lambda - S_out//2, y*lambda + S_out//2] (columns likewise) and ``pad_val`` outside the map
  (see ``pointwise_align2nat``);
* the 1x1 ``mask_pred`` convs are per position, and the window upsampling of the upscaling heads
  acts on the window axes only;
* ``mask_fuse`` (3x3) needs one more ring; the upsampling of level l's tower to the finest grid
  (bilinear, align_corners=False) needs the coarse cells around the source coordinates;
* the mask tower (``num_convs`` 3x3 convs) needs ``num_convs`` more rings of its input.

So the windows are computed from crops grown by those margins, clipped to the map (where the
crop edge is the map edge, the convs' zero padding and the interpolation's border clamping are
the same as on the full map). Positions are grouped per image and level; a group is evaluated on
one region, either the union of its windows' regions or one region per position, whichever is
cheaper. The results equal the dense computation up to float rounding (tested).

The caller may pass the mask tower computed on whole maps (``towers``); it must when the tower is
normalised (a norm's statistics would change on a crop). Training does so, with one region per
image and level (``union_only``): positives are many and spread over the image, and a batched
convolution over whole maps is faster than many crops, whose backward passes are slow.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .pointwise_align2nat import swap_align2nat_at
from .up_align2nat import upsample_windows

__all__ = ["sparse_mask_windows"]


def _crop(x: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    return x[:, :, r0 : r1 + 1, c0 : c1 + 1]


def _tower_on_region(tower, x, region, margin):
    """``tower(x)`` restricted to ``region``, computed from ``x`` grown by ``margin`` cells."""
    r0, r1, c0, c1 = region
    height, width = x.shape[-2:]
    a0, a1 = max(r0 - margin, 0), min(r1 + margin, height - 1)
    b0, b1 = max(c0 - margin, 0), min(c1 + margin, width - 1)
    out = tower(_crop(x, a0, a1, b0, b1))
    return _crop(out, r0 - a0, r1 - a0, c0 - b0, c1 - b0)


def _coarse_rows(lo: int, hi: int, lam: int, size: int) -> Tuple[int, int]:
    # Coarse cells read by bilinear upsampling by lam (align_corners=False) at fine rows lo..hi:
    # source row (y + 0.5) / lam - 0.5, its floor and the next cell (clamped to the map).
    first = max(0, (2 * lo + 1 - lam) // (2 * lam))
    last = min(size - 1, (2 * hi + 1 - lam) // (2 * lam) + 1)
    return first, last


def _tower_region(head, features, towers, image: int, level: int, region):
    """The mask tower F_l of one image on ``region``: cropped from ``towers`` if given."""
    if towers is not None:
        return _crop(towers[level][image], *region)
    x = features[level][image : image + 1]
    return _tower_on_region(head.mask_subnet, x, region, head.num_convs)


def _bipyramid_features(head, features, towers, image: int, level: int, region):
    """B_l = mask_fuse(up(F_l) + F_0) on ``region`` of the finest grid (one image)."""
    height, width = features[0].shape[-2:]
    r0, r1, c0, c1 = region
    grown = (max(r0 - 1, 0), min(r1 + 1, height - 1), max(c0 - 1, 0), min(c1 + 1, width - 1))
    tower0 = _tower_region(head, features, towers, image, 0, grown)
    lam = head.lambdas[level]
    if lam == 1:
        upsampled = tower0
    else:
        coarse_size = features[level].shape[-2:]
        q0, q1 = _coarse_rows(grown[0], grown[1], lam, coarse_size[0])
        p0, p1 = _coarse_rows(grown[2], grown[3], lam, coarse_size[1])
        tower = _tower_region(head, features, towers, image, level, (q0, q1, p0, p1))
        up = F.interpolate(tower, scale_factor=lam, mode="bilinear", align_corners=False)
        upsampled = _crop(
            up, grown[0] - q0 * lam, grown[1] - q0 * lam, grown[2] - p0 * lam, grown[3] - p0 * lam
        )
    fused = head.mask_fuse(upsampled + tower0)
    return _crop(fused, r0 - grown[0], r1 - grown[0], c0 - grown[2], c1 - grown[2])


def _read_extent(head, level: int, anchor_id: int) -> Tuple[int, int]:
    """(lambda, S_out) of the align2nat that produces the windows; (0, 0) for natural heads."""
    if head.bipyramid_on:
        return head.lambdas[level], head.window_side(level, anchor_id)
    if head.aligned_on:
        return 1, head.mask_sizes[anchor_id]
    return 0, 0


def _regions(head, level, ys, xs, anchor_ids, grid):
    """Per requested window, the region of the (aligned) grid it reads: Tensor[n, 4]."""
    height, width = grid
    lam = torch.zeros_like(ys)
    reach = torch.zeros_like(ys)
    for a in range(len(head.mask_sizes)):
        lam_a, side = _read_extent(head, level, a)
        lam[anchor_ids == a] = lam_a
        reach[anchor_ids == a] = side // 2
    if head.bipyramid_on or head.aligned_on:
        cy, cx = ys * lam, xs * lam
    else:
        cy, cx = ys, xs
    return torch.stack(
        [
            (cy - reach).clamp(min=0),
            (cy + reach).clamp(max=height - 1),
            (cx - reach).clamp(min=0),
            (cx + reach).clamp(max=width - 1),
        ],
        dim=1,
    )


# Cost of evaluating one more region, in grid cells (a few small convolutions have a fixed cost).
_REGION_OVERHEAD = 256


def _plan(
    regions: torch.Tensor, union_only: bool
) -> List[Tuple[torch.Tensor, Tuple[int, int, int, int]]]:
    """Group requests: one union region, or one region per request (the cheaper)."""
    r = regions.tolist()
    areas = sum((r1 - r0 + 1) * (c1 - c0 + 1) + _REGION_OVERHEAD for r0, r1, c0, c1 in r)
    union = (
        min(x[0] for x in r),
        max(x[1] for x in r),
        min(x[2] for x in r),
        max(x[3] for x in r),
    )
    union_area = (union[1] - union[0] + 1) * (union[3] - union[2] + 1)
    device = regions.device
    if union_only or union_area <= areas:
        return [(torch.arange(len(r), device=device), union)]
    return [(torch.tensor([i], device=device), tuple(x)) for i, x in enumerate(r)]


def _windows_in_region(
    head, features, towers, image, level, region, ys, xs, anchor_ids, out, index
):
    """Compute the windows of the requests ``index`` (all inside ``region``) into ``out``."""
    if head.bipyramid_on:
        base = _bipyramid_features(head, features, towers, image, level, region)
        full_size = features[0].shape[-2:]
    else:
        base = _tower_region(head, features, towers, image, level, region)
        full_size = features[level].shape[-2:]
    r0, _, c0, _ = region
    for a in torch.unique(anchor_ids).tolist():
        sel = anchor_ids == a
        side = head.mask_sizes[a]
        pred = head.mask_predictor(a)(base)  # (1, s*s, h, w)
        if head.bipyramid_on or head.aligned_on:
            lam, _ = _read_extent(head, level, a)
            pred = upsample_windows(pred, side, head.upscale_mode)
            windows = swap_align2nat_at(
                pred[0], lam, head.pad_val, ys[sel], xs[sel], (r0, c0), tuple(full_size)
            )
        else:
            at = pred[0][:, ys[sel] - r0, xs[sel] - c0].t()  # (n_a, s*s)
            at = upsample_windows(at[:, :, None, None], side, head.upscale_mode)
            windows = at.reshape(-1, side, side)
        out[a].append((index[sel], windows))


def sparse_mask_windows(
    head, features, level: int, image_ids, ys, xs, anchor_ids, towers=None, union_only=False
) -> List[Optional[torch.Tensor]]:
    """
    Implementation of :meth:`TensorMaskHead.mask_windows` (see there for the arguments).
    ``towers[l][i]`` (Tensor[1, C, H_l, W_l]), if given, is the mask tower of image i on level l.
    """
    if towers is None and not head.mask_tower_on_crops:
        raise ValueError(
            "The mask tower has a normalisation layer (MODEL.TENSOR_MASK.HEAD_NORM): pass the "
            "towers computed on whole maps (TensorMaskHead.mask_towers)"
        )
    num_anchors = len(head.mask_sizes)
    parts = [[] for _ in range(num_anchors)]
    grid = features[0].shape[-2:] if head.bipyramid_on else features[level].shape[-2:]
    all_index = torch.arange(ys.numel(), device=ys.device)
    for image in torch.unique(image_ids).tolist():
        in_image = image_ids == image
        index, y, x, a = all_index[in_image], ys[in_image], xs[in_image], anchor_ids[in_image]
        regions = _regions(head, level, y, x, a, grid)
        for members, region in _plan(regions, union_only):
            _windows_in_region(
                head, features, towers, image, level, region, y[members], x[members], a[members],
                parts, index[members],
            )

    results: List[Optional[torch.Tensor]] = []
    for a in range(num_anchors):
        if not parts[a]:
            results.append(None)
            continue
        index = torch.cat([p[0] for p in parts[a]])
        windows = torch.cat([p[1] for p in parts[a]])
        # Back to request order (requests of window id a, sorted by their request index).
        results.append(windows[torch.argsort(index)])
    return results
