"""Plain-torch mirror of ``medssl.models.backbones.ResNet18Encoder`` (MONAI ResNet-18, no fc).

Same module tree and state_dict keys as MONAI's ``ResNet`` with basic blocks [2, 2, 2, 2] and
shortcut type B (1x1x1 conv with bias + BN). Template: ``medssl.submit.export`` inlines the code
below the ``# %% exported`` line into estimator.py.
"""

from __future__ import annotations

import torch
from torch import nn

# %% exported
ARCHITECTURE = "resnet18_3d"


class ResNetBlock(nn.Module):
    """Basic block: conv3-BN-ReLU-conv3-BN, plus the (downsampled) input, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv3d(in_planes, planes, 1, stride=stride), nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(out + residual)


class ResNet18(nn.Module):
    """Stem conv 7^3 / stem_stride - BN - ReLU - maxpool 3/2 - layer1..4 - global average pool.

    Shapes: (B, C, D, H, W) -> (B, 512).
    """

    def __init__(self, in_channels: int = 1, stem_stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=stem_stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.act = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        planes = [64, 128, 256, 512]
        for i, (c_in, c_out) in enumerate(zip([64] + planes[:-1], planes)):
            stride = 1 if i == 0 else 2
            self.add_module(f"layer{i + 1}", nn.Sequential(ResNetBlock(c_in, c_out, stride), ResNetBlock(c_out, c_out)))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def build_backbone(in_channels: int = 1, stem_stride: int = 2, activation_checkpointing: bool = False) -> nn.Module:
    """The backbone from metadata.pkl's kwargs (checkpointing only matters for training: ignored)."""
    return ResNet18(in_channels, stem_stride)
