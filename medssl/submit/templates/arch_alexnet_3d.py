"""Plain-torch mirror of ``medssl.models.backbones.AlexNet3d`` (same module tree, same state_dict keys).

Template: ``medssl.submit.export`` inlines the code below the ``# %% exported`` line into estimator.py.
"""

from __future__ import annotations

import torch
from torch import nn

# %% exported
ARCHITECTURE = "alexnet_3d"


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list:
    return [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding), nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True)]


class AlexNet3d(nn.Module):
    """3D AlexNet (OpenBHB baselines) with ceil-mode max pools and a global average pool.

    Shapes: (B, C, D, H, W) -> (B, 128); inputs need at least 17 voxels per axis.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, 64, 5, stride=2), nn.MaxPool3d(3, stride=3, ceil_mode=True),
            *conv_bn_relu(64, 128, 3), nn.MaxPool3d(3, stride=3, ceil_mode=True),
            *conv_bn_relu(128, 192, 3, padding=1),
            *conv_bn_relu(192, 192, 3, padding=1),
            *conv_bn_relu(192, 128, 3, padding=1),
        )
        self.num_features = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))


def build_backbone(in_channels: int = 1, activation_checkpointing: bool = False) -> nn.Module:
    """The backbone from metadata.pkl's kwargs (checkpointing only matters for training: ignored)."""
    return AlexNet3d(in_channels)
