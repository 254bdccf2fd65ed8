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


def fold_blocks(t: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """Space-to-depth: ``(N, C, 2d, 2h, 2w) -> (N, 8C, d, h, w)``, channel ``8c + 4 b_d + 2 b_h + b_w``
    holding ``t[:, c, 2i + b_d, 2j + b_h, 2k + b_w]``.

    One copy, which also casts to ``dtype`` and lays the result out as ``channels_last_3d`` (physical
    ``(N, d, h, w, C, 2, 2, 2)``) when ``channels_last``, else contiguous.
    """
    n, c, d2, h2, w2 = t.shape
    d, h, w = d2 // 2, h2 // 2, w2 // 2
    blocks = t.reshape(n, c, d, 2, h, 2, w, 2)
    if channels_last:
        folded = blocks.permute(0, 2, 4, 6, 1, 3, 5, 7).to(dtype, memory_format=torch.contiguous_format, copy=True)
        return folded.view(n, d, h, w, 8 * c).permute(0, 4, 1, 2, 3)
    folded = blocks.permute(0, 1, 3, 5, 7, 2, 4, 6).to(dtype, memory_format=torch.contiguous_format, copy=True)
    return folded.view(n, 8 * c, d, h, w)


def conv_input_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution computes ``x`` in: autocast's (when it is on for ``x``'s device and ``x``
    is a float32/16 tensor it casts) or ``x``'s own."""
    device = x.device.type
    if (x.dtype in (torch.float32, torch.float16, torch.bfloat16) and torch.amp.is_autocast_available(device)
            and torch.is_autocast_enabled(device)):
        return torch.get_autocast_dtype(device)
    return x.dtype


def space_to_depth_conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)`` for a stride-2 ``conv``, computed on 2x2x2 space-to-depth blocks (see module docstring).

    The folded input and weight are made in the dtype the convolution runs in (autocast's cast done by
    the folding copy) and in ``x``'s layout (``channels_last_3d`` when ``x`` is), so the convolution
    copies neither again. Shapes: ``x (B, C, D, H, W) -> (B, C_out, D_out, H_out, W_out)``, the same as
    ``conv(x)``.
    """
    if not supports_space_to_depth(conv):
        raise ValueError(f"space_to_depth_conv3d needs a stride-2 odd cubic Conv3d, got {conv}")
    k, half = conv.kernel_size[0], (conv.kernel_size[0] + 1) // 2
    pads, blocks = [], []
    for size, pad in zip(x.shape[2:], conv.padding):
        out = (size + 2 * pad - k) // 2 + 1
        blocks.append(out + half - 1)  # input positions j = i + a the stride-1 conv reads
        pads.append((pad, 2 * blocks[-1] - size - pad))  # right pad (or crop if negative)
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d)
    xs = fold_blocks(F.pad(x, [p for pair in reversed(pads) for p in pair]), conv_input_dtype(x), channels_last)
    wp = F.pad(conv.weight, (0, 2 * half - k) * 3)  # (O, C, 2K, 2K, 2K), zero taps past the kernel
    ws = fold_blocks(wp, conv_input_dtype(wp), channels_last)
    return F.conv3d(xs, ws, conv.bias)


def stem_conv(x: torch.Tensor, conv: nn.Conv3d, space_to_depth: bool) -> torch.Tensor:
    """``conv(x)``, through :func:`space_to_depth_conv3d` when asked and the convolution allows it."""
    if space_to_depth and supports_space_to_depth(conv):
        return space_to_depth_conv3d(x, conv)
    return conv(x)
