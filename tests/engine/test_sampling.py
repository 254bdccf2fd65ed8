"""Per-item seeds: CPU-side views independent of workers, persistent workers, exact resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_train_loop import ToyVolumes, cfg, make_method, state_of

from medssl.engine.sampling import ResumableSampler, SeededItems, sample_seed
from medssl.engine.train import train_loop
from medssl.methods.siamese import SiameseContrastive
from medssl.transforms import TwoViewsTransform
from medssl.transforms import monai_view_transform


class ViewsToy(ToyVolumes):
    """ToyVolumes whose items carry two MONAI y-aware views (the CPU path) and the reading process."""

    def __init__(self) -> None:
        super().__init__()
        self.transform = TwoViewsTransform(monai_view_transform("yaware", p=1.0))

    def __getitem__(self, i: int) -> dict:
        return {**self.transform(super().__getitem__(i)), "pid": os.getpid()}


class Recording(SiameseContrastive):
    """Remembers the process ids that read each batch and the first view of each step."""

    def __init__(self, base: SiameseContrastive) -> None:
        super().__init__(base.backbone, base.head, base.loss)
        self.pids: set[int] = set()
        self.first_views: list[torch.Tensor] = []

    def training_step(self, batch, views):  # type: ignore[no-untyped-def]
        self.pids.update(int(p) for p in batch["pid"])
        self.first_views.append(views[0].clone())
        return super().training_step(batch, views)


def test_sampler_pairs_each_index_with_its_epoch_seed() -> None:
    s = ResumableSampler(12, 4, seed=5)
    first = list(s)
    assert [i for i, _ in first] == s.indices()
    assert all(seed == sample_seed(5, 0, i) for i, seed in first)
    s.set_epoch(1)
    second = dict(list(s))
    assert all(second[i] != seed for i, seed in first)  # new draws every epoch
    assert len({seed for _, seed in first}) == len(first)
    assert sample_seed(5, 0, 3) == sample_seed(5, 0, 3) < 2**32
    assert sample_seed(-1, 0, 3) != sample_seed(1, 0, 3)  # negative run seeds are valid (seed_everything)


class GlobalRngToy(ToyVolumes):
    """A transform drawing from torch's and numpy's global generators (as user code might)."""

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        return {**item, "draw": torch.rand(1) + float(np.random.rand())}


def test_seeded_items_reseed_the_transform_and_leave_the_caller_rng_alone() -> None:
    items = SeededItems(ViewsToy())
    torch.manual_seed(0)
    np.random.seed(0)
    expected_next = (torch.rand(1), np.random.rand())
    torch.manual_seed(0)
    np.random.seed(0)
    a, b, c = items[(3, 11)], items[(3, 11)], items[(3, 12)]
    drawn = SeededItems(GlobalRngToy())
    assert torch.equal(drawn[(1, 5)]["draw"], drawn[(1, 5)]["draw"])
    assert not torch.equal(drawn[(1, 5)]["draw"], drawn[(1, 6)]["draw"])
    assert torch.equal(a["views"][0], b["views"][0]) and torch.equal(a["views"][1], b["views"][1])
    assert not torch.equal(a["views"][0], a["views"][1])  # the two views differ
    assert not torch.equal(a["views"][0], c["views"][0])
    assert torch.equal(torch.rand(1), expected_next[0]) and np.random.rand() == expected_next[1]


def test_cpu_views_do_not_depend_on_workers_and_workers_persist(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = {}
    for workers in (0, 2):
        method = Recording(make_method())
        train_loop(method, ViewsToy(), None, cfg(epochs=2, num_threads=1), tmp_path / str(workers),
                   num_workers=workers, tensorboard=False)
        runs[workers] = method
    a, b = state_of(tmp_path / "0"), state_of(tmp_path / "2")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert runs[0].pids == {os.getpid()}
    assert len(runs[2].pids) == 2  # the same two workers served both epochs
    steps = runs[0].first_views  # 2 steps per epoch: epoch 2 draws new views
    assert len(steps) == 4 and not torch.equal(steps[0].sort(0).values, steps[2].sort(0).values)


def test_a_killed_run_with_worker_views_resumes_to_the_uninterrupted_weights(  # type: ignore[no-untyped-def]
        tmp_path, monkeypatch) -> None:
    import medssl.engine.train as engine

    real_save = engine.save_checkpoint

    def save_then_die(path, **state):  # type: ignore[no-untyped-def]
        real_save(path, **state)
        raise KeyboardInterrupt

    train_loop(make_method(), ViewsToy(), None, cfg(num_threads=1), tmp_path / "straight",
               tensorboard=False)
    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_loop(make_method(), ViewsToy(), None, cfg(num_threads=1), tmp_path / "split",
                   num_workers=2, tensorboard=False)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    train_loop(make_method(), ViewsToy(), None, cfg(num_threads=1), tmp_path / "split",
               num_workers=2, tensorboard=False)
    a, b = state_of(tmp_path / "straight"), state_of(tmp_path / "split")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_epochs_cut_short_restart_the_persistent_workers_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``max_steps_per_epoch`` leaves prefetched batches behind; the next epoch must not receive them."""
    runs = {}
    for workers in (0, 2):
        method = Recording(make_method())
        train_loop(method, ViewsToy(), None, cfg(epochs=3, max_steps_per_epoch=1, num_threads=1),
                   tmp_path / str(workers), num_workers=workers, tensorboard=False)
        runs[workers] = torch.stack(method.first_views)
    assert runs[0].shape[0] == 3 and torch.equal(runs[0], runs[2])
