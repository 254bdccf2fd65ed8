"""``CohortDataset``: a PyTorch dataset of dicts over a Cohort, with the deterministic preprocessing.

Per item: read (lazy) -> crop/pad (MONAI ``ResizeWithPadOrCrop``, centred, zero padding) or resample
(MONAI ``Resize``, trilinear, Gaussian anti-aliasing when shrinking) to ``shape`` -> per-image z-score
over the whole volume ``(x - mean(x)) / std(x)`` (the starting kit's convention) -> optional
``transform`` (MONAI dict transforms or any callable on the dict). The deterministic part can be cached on
disk as ``.npy``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import Dataset

from medssl.data.cohort import Cohort
from medssl.errors import DataError

SEX_CODES = {"female": 0, "male": 1, "": -1}


def resize_volume(
    volume: np.ndarray, shape: Sequence[int], resize: Literal["crop_pad", "resample"] = "crop_pad"
) -> np.ndarray:
    """Bring a ``(1, D, H, W)`` volume to ``(1, *shape)`` by centred crop/pad or trilinear resampling."""
    shape = tuple(int(s) for s in shape)
    if tuple(volume.shape[1:]) == shape:
        return volume
    volume = np.array(volume, dtype=np.float32)  # a writable copy: memmaps are read-only
    if resize == "crop_pad":
        # deferred: MONAI (seconds; it pulls sklearn and matplotlib) is needed by no other part of medssl.data
        from monai.transforms import ResizeWithPadOrCrop

        out = ResizeWithPadOrCrop(shape, mode="constant")(volume)
    elif resize == "resample":
        # deferred: MONAI (seconds; it pulls sklearn and matplotlib) is needed by no other part of medssl.data
        from monai.transforms import Resize

        # anti-aliasing as skimage: sigma = (factor - 1) / 2 per shrunk axis; edge-replicating border
        # (MONAI's own anti-aliasing zero-pads, which darkens the border of non-zero images)
        sigma = [max((s - t) / t / 2, 0.0) for s, t in zip(volume.shape[1:], shape)]
        smooth = gaussian_filter(volume[0], sigma, mode="nearest")[None] if any(sigma) else volume
        out = Resize(shape, mode="trilinear")(smooth)
    else:
        raise ValueError(f"resize must be 'crop_pad' or 'resample', got {resize!r}")
    return np.asarray(out, dtype=np.float32)


def zscore(volume: np.ndarray, where: str = "image") -> np.ndarray:
    """``(x - mean) / std`` over the whole volume; a constant image is a DataError."""
    mean, std = float(volume.mean(dtype=np.float64)), float(volume.std(dtype=np.float64))
    if std < 1e-8:
        raise DataError(f"{where}: image is constant (std {std:.2g}); it cannot be z-scored, check the file")
    return ((volume - mean) / std).astype(np.float32)


def preprocess_image(
    volume: np.ndarray,
    shape: Sequence[int] | None = None,
    resize: Literal["crop_pad", "resample"] = "crop_pad",
    normalize: Literal["zscore"] | None = "zscore",
    where: str = "image",
) -> np.ndarray:
    """The dataset's deterministic preprocessing of one float32 ``(1, D, H, W)`` volume."""
    if shape is not None:
        volume = resize_volume(volume, shape, resize)
    if normalize == "zscore":
        volume = zscore(volume, where)
    elif normalize is not None:
        raise ValueError(f"normalize must be 'zscore' or None, got {normalize!r}")
    return np.ascontiguousarray(volume, dtype=np.float32)


class CohortDataset(Dataset):
    """Dataset of dicts ``{"image": float32 (1, D, H, W), "age", "sex", "site", "diagnosis",
    "participant_id", "split", "index"}`` over ``cohort`` (see ARCHITECTURE.md).

    Args:
        cohort: the scans.
        transform: optional callable on the item dict (e.g. MONAI dict transforms on key ``image``).
        shape: target ``(D, H, W)``; None keeps the stored shape.
        resize: ``crop_pad`` (centred) or ``resample`` (trilinear).
        normalize: ``zscore`` (per image) or None (stored intensities).
        cache_dir: optional folder caching the preprocessed volumes as ``.npy`` (keyed by the file's
            path, size and mtime and by the preprocessing settings).
    """

    def __init__(
        self,
        cohort: Cohort,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        shape: Sequence[int] | None = None,
        resize: Literal["crop_pad", "resample"] = "crop_pad",
        normalize: Literal["zscore"] | None = "zscore",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if resize not in ("crop_pad", "resample"):
            raise ValueError(f"resize must be 'crop_pad' or 'resample', got {resize!r}")
        if normalize not in ("zscore", None):
            raise ValueError(f"normalize must be 'zscore' or None, got {normalize!r}")
        if shape is not None and len(shape) != 3:
            raise ValueError(f"shape must be (D, H, W), got {shape!r}")
        self.cohort = cohort
        self.transform = transform
        self.shape = tuple(int(s) for s in shape) if shape is not None else None
        self.resize = resize
        self.normalize = normalize
        self.cache_dir = Path(cache_dir) if cache_dir else None

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of the images this dataset yields (before ``transform``)."""
        return self.shape or self.cohort.image_shape  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.cohort)

    def image(self, i: int) -> np.ndarray:
        """The preprocessed float32 ``(1, D, H, W)`` volume of row ``i`` (from the cache if enabled)."""
        if self.cache_dir is None:
            return self._compute(i)
        settings = f"{self.cohort.cache_key(i)}|{self.shape}|{self.resize}|{self.normalize}"
        path = self.cache_dir / f"{hashlib.sha1(settings.encode()).hexdigest()}.npy"
        if path.is_file():
            return np.load(path)
        volume = self._compute(i)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy.tmp", dir=self.cache_dir)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, volume)
        os.replace(tmp, path)  # atomic: concurrent workers never see half a file
        return volume

    def _compute(self, i: int) -> np.ndarray:
        where = f"{self.cohort.source} row {i} ({self.cohort.table.at[i, 'participant_id']})"
        return preprocess_image(self.cohort.read(i), self.shape, self.resize, self.normalize, where)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.cohort.table.iloc[i]
        item = {
            "image": torch.from_numpy(self.image(i)),
            "age": np.float32(row["age"]),
            "sex": SEX_CODES[row["sex"]],
            "site": int(row["site_code"]),
            "diagnosis": str(row["diagnosis"]),
            "participant_id": str(row["participant_id"]),
            "split": str(row["split"]),
            "index": int(i),
        }
        return self.transform(item) if self.transform is not None else item
