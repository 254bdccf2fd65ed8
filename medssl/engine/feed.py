"""Where the training loop's batches come from: a DataLoader, or a cohort already on the device.

Both read the same :class:`~medssl.engine.sampling.ResumableSampler`, so the rows of every step (and of
a run resumed mid-epoch) are the same whichever feeds them:

- a map-style dataset: one DataLoader for the whole run over ``SeededItems(dataset)`` (its workers
  persist across epochs; items are read as ``(index, seed)`` pairs so CPU-side views do not depend on
  the workers), each batch moved by :func:`~medssl.engine.prefetch.device_batches` (on CUDA the copy of
  the next batch overlaps this step);
- a :class:`~medssl.data.device_cache.DeviceCohort` (``data.cache: device``): the epoch's row numbers go
  to the device once, and each step gathers its batch there (``DeviceCohort.batch``): no workers, no
  host copy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medssl.data.device_cache import DeviceCohort
from medssl.engine.prefetch import device_batches, side_stream
from medssl.engine.sampling import ResumableSampler, SeededItems

Batch = dict[str, Any]
Feed = Callable[[int], Iterator[Batch]]
"""``feed(n)``: the next ``n`` batches of the sampler's current epoch, on the device."""


def batch_feed(dataset: Dataset | DeviceCohort, sampler: ResumableSampler, move: Callable[[Batch], Batch],
               device: torch.device, num_workers: int = 0) -> Feed:
    """The run's feed of ``dataset`` in ``sampler``'s order; ``move`` puts a batch on ``device`` (layout
    included; a no-op move for a cohort already there)."""
    if isinstance(dataset, DeviceCohort):
        if dataset.device != device:
            raise ValueError(f"the cached cohort is on {dataset.device}, the training runs on {device}")
        return lambda n: cached_batches(dataset, sampler, move, n)
    loader = DataLoader(SeededItems(dataset), batch_size=sampler.batch_size, sampler=sampler,
                        num_workers=num_workers, persistent_workers=num_workers > 0,
                        pin_memory=device.type == "cuda", drop_last=True)
    copy_stream = side_stream(device)
    return lambda n: device_batches(itertools.islice(loader, n), move, copy_stream)


def cached_batches(cohort: DeviceCohort, sampler: ResumableSampler, move: Callable[[Batch], Batch],
                   n: int) -> Iterator[Batch]:
    """The first ``n`` batches of ``sampler``'s current epoch (after its skipped batches), gathered on
    the cohort's device."""
    rows = torch.tensor(sampler.indices(), dtype=torch.int64).to(cohort.device)
    size = sampler.batch_size
    for k in range(min(n, len(rows) // size)):
        yield move(cohort.batch(rows[k * size:(k + 1) * size]))
