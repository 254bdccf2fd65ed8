"""Plain-torch mirror of ``medssl.models.backbones.DenseNet121Encoder`` (MONAI DenseNet121, no classifier).

Same module tree and state_dict keys as MONAI's ``DenseNet`` (init 64, growth 32, blocks
(6, 12, 24, 16), bottleneck 4, no dropout); ``class_layers`` has no parameters. Template:
``medssl.submit.export`` inlines the code below the ``# %% exported`` line into estimator.py.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# %% exported
ARCHITECTURE = "densenet121_3d"


class DenseLayer(nn.Module):
    """BN-ReLU-conv1 (4k channels)-BN-ReLU-conv3 (k channels), concatenated to the input."""

    def __init__(self, in_channels: int, growth_rate: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        self.layers = nn.Sequential(OrderedDict([
            ("norm1", nn.BatchNorm3d(in_channels)), ("relu1", nn.ReLU(inplace=True)),
            ("conv1", nn.Conv3d(in_channels, mid, 1, bias=False)),
            ("norm2", nn.BatchNorm3d(mid)), ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv3d(mid, growth_rate, 3, padding=1, bias=False)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


class DenseNet121(nn.Module):
    """conv0 7^3/2 - BN - ReLU - maxpool 3/2 - 4 dense blocks with transitions - BN, then ReLU and
    global average pooling. Shapes: (B, C, D, H, W) -> (B, 1024).
    """

    def __init__(self, in_channels: int = 1, block_config: tuple = (6, 12, 24, 16)) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv3d(in_channels, 64, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm3d(64)), ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool3d(3, stride=2, padding=1)),
        ]))
        channels = 64
        for i, n_layers in enumerate(block_config):
            block = nn.Sequential()
            for j in range(n_layers):
                block.add_module(f"denselayer{j + 1}", DenseLayer(channels + 32 * j))
            self.features.add_module(f"denseblock{i + 1}", block)
            channels += 32 * n_layers
            if i < len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", nn.Sequential(OrderedDict([
                    ("norm", nn.BatchNorm3d(channels)), ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv3d(channels, channels // 2, 1, bias=False)),
                    ("pool", nn.AvgPool3d(2, stride=2)),
                ])))
                channels //= 2
            else:
                self.features.add_module("norm5", nn.BatchNorm3d(channels))
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.features(x)).mean(dim=(2, 3, 4))


def build_backbone(in_channels: int = 1, activation_checkpointing: bool = False) -> nn.Module:
    """The backbone from metadata.pkl's kwargs (checkpointing only matters for training: ignored)."""
    return DenseNet121(in_channels)
