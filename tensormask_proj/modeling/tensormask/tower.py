"""The convolution towers of TensorMask's head and mask branch (official ``*_subnet``)."""

from detectron2.layers import Conv2d, get_norm
from torch import nn

__all__ = ["conv_tower"]


def conv_tower(in_channels: int, channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """
    [conv3x3, ReLU] * num_convs, (N, in_channels, H, W) -> (N, channels, H, W).

    The convs sit at indices 0, 2, 4, ... as in the official state_dict. detectron2's Conv2d
    keeps the plain conv's parameter names and adds ".norm.*" ("" = no norm, official).
    """
    layers = []
    for i in range(num_convs):
        layers.append(
            Conv2d(
                in_channels if i == 0 else channels,
                channels,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, channels) if norm else None,
            )
        )
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)
