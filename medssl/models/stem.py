"""A stride-2 stem convolution computed as a stride-1 convolution on a space-to-depth input.

The 7^3 stride-2 stem of ResNet-18-3D and DenseNet121-3D reads a 1-channel volume, a shape GPU
convolution kernels handle badly (one input channel gives nothing to vectorise over, and the weight
gradient reduces over the whole volume). Folding every 2x2x2 block of voxels into channels turns it into
an exact stride-1 convolution with 8x more input channels and a 4^3 kernel (TPU ResNets use the same
trick in 2D). For a kernel k (odd), stride 2 and padding p, along one axis:

    o[i] = sum_{t<k} w[t] x'[2i + t]      (x' = x padded by p on the left)
         = sum_{a<K} sum_{b<2} W_b[a] X_b[i + a],   t = 2a + b,  K = ceil(k / 2),
    W_b[a] = w[2a + b] (zero where 2a + b >= k),   X_b[j] = x'[2j + b].

In 3D the 8 parities (b_d, b_h, b_w) become channels. The result equals ``conv(x)`` up to float summation
order; the module's parameters (and so its state-dict keys) are untouched: only the arithmetic changes.
It costs (2K / k)^3 = 1.49x the stem's multiply-adds for k = 7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supports_space_to_depth(conv: nn.Conv3d) -> bool:
    """True for a plain 3D convolution with stride 2, an odd cubic kernel and numeric padding."""
    k = conv.kernel_size
    return (
        isinstance(conv, nn.Conv3d) and conv.stride == (2, 2, 2) and conv.dilation == (1, 1, 1)
        and conv.groups == 1 and len(set(k)) == 1 and k[0] % 2 == 1
        and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros"
    )


def space_to_depth_conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)`` for a stride-2 ``conv``, computed on 2x2x2 space-to-depth blocks (see module docstring).

    Shapes: ``x (B, C, D, H, W) -> (B, C_out, D_out, H_out, W_out)``, the same as ``conv(x)``.
    """
    if not supports_space_to_depth(conv):
        raise ValueError(f"space_to_depth_conv3d needs a stride-2 odd cubic Conv3d, got {conv}")
    k, half = conv.kernel_size[0], (conv.kernel_size[0] + 1) // 2
    batch, channels = x.shape[:2]
    pads, blocks = [], []
    for size, pad in zip(x.shape[2:], conv.padding):
        out = (size + 2 * pad - k) // 2 + 1
        blocks.append(out + half - 1)  # input positions j = i + a the stride-1 conv reads
        pads.append((pad, 2 * blocks[-1] - size - pad))  # right pad (or crop if negative)
    xp = F.pad(x, [p for pair in reversed(pads) for p in pair])
    d, h, w = blocks
    xs = xp.reshape(batch, channels, d, 2, h, 2, w, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    xs = xs.reshape(batch, channels * 8, d, h, w)
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        xs = xs.contiguous(memory_format=torch.channels_last_3d)
    wp = F.pad(conv.weight, (0, 2 * half - k) * 3)  # (O, C, 2K, 2K, 2K), zero taps past the kernel
    out_ch = wp.shape[0]
    ws = wp.reshape(out_ch, channels, half, 2, half, 2, half, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    ws = ws.reshape(out_ch, channels * 8, half, half, half)
    return F.conv3d(xs, ws, conv.bias)


def stem_conv(x: torch.Tensor, conv: nn.Conv3d, space_to_depth: bool) -> torch.Tensor:
    """``conv(x)``, through :func:`space_to_depth_conv3d` when asked and the convolution allows it."""
    if space_to_depth and supports_space_to_depth(conv):
        return space_to_depth_conv3d(x, conv)
    return conv(x)
