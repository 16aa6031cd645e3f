"""
The one-level top block of an FPN (P6 only).
"""

import fvcore.nn.weight_init as weight_init
from torch import nn

__all__ = ["LastLevelP6"]


class LastLevelP6(nn.Module):
    """
    Extra FPN level P6 = conv3x3/stride 2 of ``in_feature``: detectron2's :class:`LastLevelP6P7`
    without P7, with the same parameter names (``p6.weight``, ``p6.bias``) and initialisation.
    For heads whose levels stop at P6: BlendMask's TOP_LEVELS=1 (from "p5", e.g. the "550"
    configs) and the TensorMask quick config (from "res5", as RetinaNet). Building a P7 that no
    head reads would leave parameters without gradient, which DistributedDataParallel refuses.
    """

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "p5"):
        super().__init__()
        # detectron2's FPN reads these two attributes from its top block.
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        """x: (N, C, H, W) -> [p6 (N, out_channels, ceil(H/2), ceil(W/2))]"""
        return [self.p6(x)]
