"""The card's deterministic preprocessing applied to raw volumes: centre crop/pad, then per-image z-score.

This mirrors what ``CohortDataset`` does for ``resize="crop_pad", normalize="zscore"`` so
``Embedder(preprocess=True)`` on raw volumes gives the same features as the dataset path.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import ResizeWithPadOrCrop

from medssl.errors import ConfigError


def preprocess_volumes(X: np.ndarray, shape: tuple[int, ...], normalize: str | None = "zscore") -> np.ndarray:
    """Crop/pad each volume to ``shape`` around its centre (zero padding), then z-score it.

    Args:
        X: (n, 1, D, H, W) float32.
        shape: target (D', H', W').
        normalize: ``"zscore"`` (``(x - mean) / std`` over the whole volume, population std) or None.

    Returns:
        (n, 1, D', H', W') float32.
    """
    if normalize not in ("zscore", None):
        raise ConfigError(f"unknown preprocessing.normalize {normalize!r}; expected 'zscore' or null")
    resize = ResizeWithPadOrCrop(spatial_size=tuple(int(s) for s in shape), mode="constant")
    out = np.stack([np.asarray(resize(torch.from_numpy(np.ascontiguousarray(v))), dtype=np.float32) for v in X])
    if normalize == "zscore":
        axes = tuple(range(1, out.ndim))
        mean = out.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = out.std(axis=axes, keepdims=True, dtype=np.float64)
        out = ((out - mean) / np.maximum(std, 1e-8)).astype(np.float32)
    return out
