"""``data.cache: device``: a cohort preprocessed once and held in one tensor on the training device.

``DeviceCohort.build(dataset, device)`` reads every item of a dataset of dicts (``CohortDataset``: its
deterministic preprocessing, i.e. read, crop/pad or resample, z-score) once, in order, through a
DataLoader (``num_workers`` may share the reading), and keeps

- the volumes as one bfloat16 tensor ``images`` ``(N, C, D, H, W)`` on ``device`` (rounded to nearest even:
  8 significant bits, relative error <= 2**-9);
- each per-item number (``age``, ``sex``, ``site``, ``index``) as a device tensor ``labels[key]`` ``(N,)``;
- every non-image column, text included, as a host table ``meta`` (one row per item, as
  ``medssl.eval.features.extract_features`` reports it).

``batch(rows)`` gathers the rows of a device tensor of row numbers on the device: no DataLoader, no host
copy. It equals the DataLoader's collated batch of the same rows, minus the text columns, with the
images rounded to bfloat16 and returned as float32.

Memory: ``N * C * D * H * W * 2`` bytes (OpenBHB VBM train, 3,227 x 121x145x121: 13.6 GB). The build
refuses, before reading anything, a cohort larger than ``MAX_FRACTION`` of the device's free memory
(``torch.cuda.mem_get_info`` plus what PyTorch holds unused on CUDA; the host's available memory on the
CPU, where ``device`` means host memory).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medssl.errors import ConfigError
from medssl.utils.progress import progress_bar

CACHE_DTYPE = torch.bfloat16
MAX_FRACTION = 0.9
"""Share of the free memory the cache may take; the rest is left to training."""


def free_bytes(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device`` (CUDA: free plus cached-but-unused; else the host's
    ``MemAvailable``, or free pages where ``/proc/meminfo`` is missing)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human_bytes(n: float) -> str:
    """``13.70 GB``, ``196.6 kB``: decimal units, as ``nvidia-smi`` and disk sizes are quoted."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{int(n)} B"


def check_fits(n: int, shape: tuple[int, ...], device: torch.device) -> int:
    """Bytes of ``n`` bfloat16 volumes of ``shape``; ``ConfigError`` when above ``MAX_FRACTION`` of free."""
    needed = n * math.prod(shape) * CACHE_DTYPE.itemsize
    free = free_bytes(device)
    if needed > MAX_FRACTION * free:
        raise ConfigError(
            f"data.cache=device needs {human_bytes(needed)} for {n} scans of {'x'.join(map(str, shape))} in "
            f"bfloat16, but {device} has {human_bytes(free)} free and the cache may take {MAX_FRACTION:.0%} of "
            "it (the rest is left to training): set data.cache=none, or a smaller data.shape"
        )
    return needed


class DeviceCohort:
    """A preprocessed cohort on one device (see the module docstring).

    Args:
        images: ``(N, C, D, H, W)`` bfloat16 on the device.
        labels: per-item numbers, each ``(N,)`` on the same device.
        meta: one host row per item with every non-image column.
    """

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor], meta: pd.DataFrame) -> None:
        self.images, self.labels, self.meta = images, labels, meta

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"image": float32 (B, C, D, H, W), **labels (B,)}`` of ``rows`` (int64, on ``self.device``)."""
        return {"image": self.images[rows].float(), **{key: value[rows] for key, value in self.labels.items()}}

    @classmethod
    def build(cls, dataset: Dataset, device: torch.device, *, num_workers: int = 0, batch_size: int = 8,
              progress: bool = True) -> DeviceCohort:
        """Read every item of ``dataset`` once, in order, into a ``DeviceCohort`` on ``device``.

        Raises:
            ConfigError: the cohort does not fit (checked before anything is read).
            ValueError: the dataset has a random ``transform`` (only deterministic preprocessing is cached).
        """
        if getattr(dataset, "transform", None) is not None:
            raise ValueError("DeviceCohort caches the deterministic preprocessing only; the dataset has a "
                             "transform (make the views on the device: views.backend=torch)")
        n = len(dataset)  # type: ignore[arg-type]
        output_shape = getattr(dataset, "output_shape", None)
        shape = (1, *output_shape) if output_shape is not None else tuple(dataset[0]["image"].shape)
        check_fits(n, shape, device)
        images = torch.empty((n, *shape), dtype=CACHE_DTYPE, device=device)
        numbers: dict[str, list[torch.Tensor]] = {}
        metas: list[pd.DataFrame] = []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        start = 0
        for batch in progress_bar(loader, enabled=progress, desc=f"caching {n} scans on {device}", unit="batch",
                                  leave=False, dynamic_ncols=True):
            image = batch.pop("image")
            images[start:start + len(image)] = image.to(device).to(CACHE_DTYPE)  # rounded on the device
            start += len(image)
            for key, value in batch.items():
                if isinstance(value, torch.Tensor) and value.dim() == 1:
                    numbers.setdefault(key, []).append(value)
            metas.append(pd.DataFrame({key: value.numpy() if isinstance(value, torch.Tensor) else list(value)
                                       for key, value in batch.items()}))
        labels = {key: torch.cat(values).to(device) for key, values in numbers.items()}
        return cls(images, labels, pd.concat(metas, ignore_index=True) if metas else pd.DataFrame())

    def __repr__(self) -> str:
        size = "x".join(map(str, self.images.shape[1:]))
        return (f"DeviceCohort({len(self)} scans of {size}, {self.images.dtype} on {self.device}, "
                f"{human_bytes(self.images.nbytes)}; labels {', '.join(self.labels)})")
