"""``tiny_cnn3d``: a four-layer 3D CNN for tests and laptop-sized debugging runs."""

from __future__ import annotations

import torch
from torch import nn

from medssl.registry import BACKBONES


@BACKBONES.register("tiny_cnn3d")
class TinyCNN3d(nn.Module):
    """Conv(3^3, stride 2)-BN-ReLU blocks with doubling width, then global average pooling.

    Args:
        in_channels: image channels C.
        width: channels of the first block; the last block has ``8 * width`` = ``num_features``.

    Shapes: ``(B, C, D, H, W) -> (B, num_features)``.
    """

    def __init__(self, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [
                nn.Conv3d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.num_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))
