"""What the training loop's DataLoader reads: a resumable sharded order and per-sample seeds.

Every item of a step is fetched as ``dataset[(index, seed)]`` where ``seed`` is drawn from
``(run seed, epoch, index)`` alone. A random CPU-side transform (the MONAI view path) reseeded from it
draws the same views whatever the number of DataLoader workers, whether they persist across epochs,
and where a killed run restarts: per-worker seeds (PyTorch's default) depend on which worker fetches
which item, so they give none of the three.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed of one item in one epoch (``numpy.random.SeedSequence``; a negative
    run seed is taken modulo 2**64, as numpy needs non-negative entropy)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch, index]).generate_state(1)[0])


class ResumableSampler(Sampler[tuple[int, int]]):
    """Shuffled ``(index, sample_seed)`` pairs, re-drawn each epoch from ``(seed, epoch)``, sharded.

    ``set_epoch(epoch, start_batch)`` skips the first ``start_batch`` batches without loading them.
    Only whole batches are yielded (``drop_last``): contrastive losses need full batches. Read the
    items through :class:`SeededItems`.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch, after the skipped batches."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen)
        per_rank = self.batches_per_epoch() * self.batch_size
        mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return mine[self.start_batch * self.batch_size :].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in self.indices()])

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size


class SeededItems(Dataset):
    """``dataset[(index, seed)]``: ``dataset[index]`` with its randomness seeded by ``seed``.

    Before the item is read, ``dataset.transform.set_random_state(seed=seed)`` is called when the
    transform has one (MONAI ``Randomizable`` / ``Compose``, medssl's ``TwoViewsTransform``), and
    torch's CPU generator and numpy's global one are seeded, then restored afterwards (the caller's
    random streams are untouched).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        reseed = getattr(getattr(self.dataset, "transform", None), "set_random_state", None)
        if reseed is not None:
            reseed(seed=seed)
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                np.random.seed(seed)
                return self.dataset[index]
        finally:
            np.random.set_state(numpy_state)
