"""Plain-torch mirror of ``medssl.models.tiny.TinyCNN3d`` (same module tree, same state_dict keys).

Template: ``medssl.submit.export`` inlines the code below the ``# %% exported`` line into estimator.py.
"""

from __future__ import annotations

import torch
from torch import nn

# %% exported
ARCHITECTURE = "tiny_cnn3d"


class TinyCNN3d(nn.Module):
    """Conv(3^3, stride 2)-BN-ReLU blocks of doubling width, then global average pooling.

    Shapes: (B, C, D, H, W) -> (B, 8 * width).
    """

    def __init__(self, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        layers = []
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


def build_backbone(**kwargs) -> nn.Module:
    """The backbone from the keyword arguments recorded in metadata.pkl."""
    return TinyCNN3d(**kwargs)
