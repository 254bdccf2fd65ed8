"""A 3D decoder from a feature vector to a volume, for Model Genesis and the VAE.

medssl backbones return pooled features (B, F) and nothing spatial, so a decoder that works for
every backbone has to start from that vector: ``Linear(F, C0 * s0^3)`` to a small grid, then
``n`` stride-2 transposed convolutions (each doubling the grid, halving the channels) and a 3^3
convolution to the output channels, finally trilinearly resized to the exact output shape. This is
an autoencoder bottleneck without skip connections (Model Genesis' own network is a U-Net whose
decoder also sees the encoder's feature maps); the reconstruction is therefore blurrier, but the
encoder that is trained is exactly the one medssl exports and evaluates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VectorDecoder3d(nn.Module):
    """``(B, in_features) -> (B, out_channels, *out_shape)``.

    Args:
        in_features: size of the input vector (backbone features or a latent code).
        out_shape: (D, H, W) of the reconstructed volume.
        out_channels: channels of the output (1 for MRI).
        base_channels: channels of the last upsampling stage; each earlier stage doubles them,
            capped at ``max_channels``.
        max_channels: cap on the channels of any stage.
        start_size: the first grid has at most this many voxels per axis; the number of
            upsampling stages is ``ceil(log2(max(out_shape) / start_size))``.
    """

    def __init__(
        self,
        in_features: int,
        out_shape: tuple[int, int, int] | list[int],
        out_channels: int = 1,
        base_channels: int = 8,
        max_channels: int = 64,
        start_size: int = 8,
    ) -> None:
        super().__init__()
        out_shape = tuple(int(s) for s in out_shape)
        if len(out_shape) != 3 or min(out_shape) < 1 or in_features < 1:
            raise ValueError(f"out_shape must be three sizes >= 1, got {out_shape}")
        self.out_shape = out_shape
        n_up = max(0, math.ceil(math.log2(max(out_shape) / start_size)))
        self.start = tuple(math.ceil(s / 2**n_up) for s in out_shape)
        channels = [min(base_channels * 2**i, max_channels) for i in range(n_up, -1, -1)]
        self.project = nn.Linear(in_features, channels[0] * math.prod(self.start))
        blocks: list[nn.Module] = [nn.BatchNorm3d(channels[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [
                nn.ConvTranspose3d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
        blocks.append(nn.Conv3d(channels[-1], out_channels, 3, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.channels = channels

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.project(h).view(h.shape[0], self.channels[0], *self.start)
        x = self.blocks(x)
        if tuple(x.shape[2:]) != self.out_shape:
            x = F.interpolate(x, size=self.out_shape, mode="trilinear", align_corners=False)
        return x
