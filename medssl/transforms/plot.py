"""Figures of augmented views: a volume and its views on three orthogonal mid-slices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: no global backend state
from torch import nn

from medssl.utils.io import atomic_path

AXIS_NAMES = ("axis 0 (sagittal in MNI)", "axis 1 (coronal)", "axis 2 (axial)")


def make_views(volume: Any, augmenter: nn.Module | Callable, n_views: int = 4, seed: int = 0) -> torch.Tensor:
    """``n_views`` random views of one volume, reproducible from ``seed``.

    Args:
        volume: ``(1, D, H, W)`` or ``(D, H, W)`` array or tensor.
        augmenter: a batched ``ViewAugmenter`` (given an ``(n_views, 1, D, H, W)`` batch of copies and
            a seeded generator) or a MONAI dict transform on ``"image"`` (called once per view).

    Returns:
        ``(n_views, D, H, W)`` float32 tensor.
    """
    vol = torch.as_tensor(np.asarray(volume), dtype=torch.float32)
    if vol.dim() == 3:
        vol = vol[None]
    if vol.dim() != 4 or vol.shape[0] != 1:
        raise ValueError(f"expected one volume (1, D, H, W), got shape {tuple(vol.shape)}")
    if isinstance(augmenter, nn.Module):
        batch = vol[None].expand(n_views, -1, -1, -1, -1).contiguous()
        return augmenter(batch, torch.Generator().manual_seed(seed))[:, 0]
    if hasattr(augmenter, "set_random_state"):
        augmenter.set_random_state(seed)
    views = [torch.as_tensor(augmenter({"image": vol.clone()})["image"])[0] for _ in range(n_views)]
    return torch.stack(views)


def plot_views(
    volume: Any,
    augmenter: nn.Module | Callable,
    path: str | Path,
    n_views: int = 4,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draw ``volume`` and ``n_views`` views (rows) on the mid-slices of its three axes (columns).

    All panels share the grey scale of the original (1st-99th percentile), so intensity changes
    (noise, bias field) show. Written atomically as PNG (or any format matplotlib infers from the
    suffix); the caller decides about overwriting.

    Returns:
        ``path``.
    """
    vol = torch.as_tensor(np.asarray(volume), dtype=torch.float32).reshape(-1, *np.shape(volume)[-3:])[0]
    views = make_views(vol, augmenter, n_views, seed)
    rows = [("original", vol)] + [(f"view {i + 1}", v) for i, v in enumerate(views)]
    vmin, vmax = np.percentile(vol.numpy(), [1, 99])
    fig = Figure(figsize=(3 * 3, 2.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (label, v) in enumerate(rows):
        arr = v.detach().cpu().numpy()
        for c in range(3):
            mid = np.take(arr, arr.shape[c] // 2, axis=c)
            ax = axes[r, c]
            ax.imshow(np.rot90(mid), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(AXIS_NAMES[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(label)
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    return path
