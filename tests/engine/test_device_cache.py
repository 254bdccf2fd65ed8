"""``data.cache: device``: the cached cohort feeds the loader's batches (bf16-rounded), trains to the same
weights, resumes exactly, and refuses what it cannot hold (tested on the CPU, where device = host memory)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_loop import cfg, make_method, noise_views, state_of
from torch.utils.data import DataLoader

import medssl.data.device_cache as device_cache
from medssl.data import CohortDataset, make_synthetic_cohort, open_cohort
from medssl.data.device_cache import DeviceCohort, check_fits
from medssl.engine.feed import cached_batches
from medssl.engine.sampling import ResumableSampler, SeededItems
from medssl.engine.train import train_loop
from medssl.errors import ConfigError

CPU = torch.device("cpu")
SHAPE = (16, 16, 16)  # the cohort is stored at 16x20x16: the dataset crops it


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> CohortDataset:
    root = make_synthetic_cohort(tmp_path_factory.mktemp("cache") / "c", n_subjects=30, n_sites=3,
                                 n_external_sites=1, shape=(16, 20, 16), seed=1, layout="hf")
    return CohortDataset(open_cohort(root).select(["train"]), shape=SHAPE)


class Bf16Rounded(torch.utils.data.Dataset):
    """``dataset`` with each image rounded to bfloat16 and back: what the cache stores, read the loader's way."""

    def __init__(self, dataset: CohortDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        return {**item, "image": item["image"].to(torch.bfloat16).float()}


def loader_batches(data: torch.utils.data.Dataset, sampler: ResumableSampler) -> list[dict]:
    """The training loop's DataLoader path, as it was before the cache (medssl.engine.feed)."""
    return list(DataLoader(SeededItems(data), batch_size=sampler.batch_size, sampler=sampler, drop_last=True))


def test_cached_batches_equal_the_loaders_batches_after_bf16_rounding(dataset: CohortDataset) -> None:
    cohort = DeviceCohort.build(dataset, CPU, batch_size=5, progress=False)  # 5 does not divide N
    assert cohort.images.dtype == torch.bfloat16 and cohort.images.shape == (len(dataset), 1, *SHAPE)
    sampler = ResumableSampler(len(dataset), 4, seed=3)
    for epoch, start in ((0, 0), (1, 0), (1, 2)):  # (1, 2): a run resumed after 2 batches of epoch 1
        sampler.set_epoch(epoch, start)
        cached = list(cached_batches(cohort, sampler, lambda b: b, 100))
        expected = loader_batches(dataset, sampler)
        assert len(cached) == len(expected) == len(dataset) // 4 - start
        for got, want in zip(cached, expected):
            rounded = want["image"].to(torch.bfloat16).float()
            assert got["image"].dtype == torch.float32 and torch.equal(got["image"], rounded)
            assert not torch.equal(rounded, want["image"])  # bf16 storage does round the volumes
            assert (got["image"] - want["image"]).abs().max() <= 2**-8 * want["image"].abs().max()
            for key in ("age", "sex", "site", "index"):
                assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
            assert set(want) - set(got) == {"diagnosis", "participant_id", "split"}  # text stays in meta
    rows = np.asarray(cohort.meta["index"])
    assert (rows == np.arange(len(dataset))).all()
    assert list(cohort.meta["participant_id"]) == list(dataset.cohort.table.participant_id)


def test_training_from_the_cache_gives_the_loaders_weights_and_resumes_exactly(
        dataset: CohortDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same steps, same views, same weights (bit for bit on the CPU) as the DataLoader fed bf16-rounded
    volumes; a run killed after its first checkpoint and resumed from the cache ends the same."""
    cohort = DeviceCohort.build(dataset, CPU, progress=False)
    config = cfg(epochs=3, batch_size=6)
    train_loop(make_method(), Bf16Rounded(dataset), noise_views, config, tmp_path / "loader", tensorboard=False)
    train_loop(make_method(), cohort, noise_views, config, tmp_path / "cache", tensorboard=False)

    import medssl.engine.train as engine

    real_save = engine.save_checkpoint

    def save_then_die(path, **state):  # type: ignore[no-untyped-def]
        real_save(path, **state)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_loop(make_method(), cohort, noise_views, config, tmp_path / "resumed", tensorboard=False)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    train_loop(make_method(), cohort, noise_views, config, tmp_path / "resumed", tensorboard=False)
    loader, cached, resumed = (state_of(tmp_path / name) for name in ("loader", "cache", "resumed"))
    for key in loader:
        assert torch.equal(loader[key], cached[key]), key
        assert torch.equal(cached[key], resumed[key]), key
    unrounded = tmp_path / "unrounded"  # the check can fail: full-precision volumes train elsewhere
    train_loop(make_method(), dataset, noise_views, config, unrounded, tensorboard=False)
    assert any(not torch.equal(loader[k], v) for k, v in state_of(unrounded).items() if v.is_floating_point())


def test_a_cohort_that_does_not_fit_is_refused_with_the_numbers(dataset: CohortDataset,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenBHB VBM train: 3227 x 121x145x121 voxels x 2 bytes = 13,701,486,030 bytes
    monkeypatch.setattr(device_cache, "free_bytes", lambda device: 14_000_000_000)
    with pytest.raises(ConfigError, match=r"needs 13\.70 GB for 3227 scans of 1x121x145x121 in bfloat16, "
                                          r"but cpu has 14\.00 GB free and the cache may take 90%"):
        check_fits(3227, (1, 121, 145, 121), CPU)
    monkeypatch.setattr(device_cache, "free_bytes", lambda device: 16_000_000_000)
    assert check_fits(3227, (1, 121, 145, 121), CPU) == 3227 * 121 * 145 * 121 * 2

    read: list[int] = []
    real_image = CohortDataset.image
    monkeypatch.setattr(CohortDataset, "image", lambda self, i: read.append(i) or real_image(self, i))
    needed = len(dataset) * 16**3 * 2  # 18 training scans: 147,456 bytes
    monkeypatch.setattr(device_cache, "free_bytes", lambda device: needed)  # 90 % of it is too little
    with pytest.raises(ConfigError, match=r"needs 147\.5 kB for 18 scans of 1x16x16x16 .* cpu has 147\.5 kB free"):
        DeviceCohort.build(dataset, CPU, progress=False)
    assert read == []  # refused before reading a scan


def test_free_memory_on_the_cpu_is_the_hosts() -> None:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < device_cache.free_bytes(CPU) <= total


def test_a_dataset_with_random_views_is_not_cached(dataset: CohortDataset) -> None:
    views = CohortDataset(dataset.cohort, transform=lambda item: item, shape=SHAPE)
    with pytest.raises(ValueError, match="deterministic preprocessing only"):
        DeviceCohort.build(views, CPU, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_cache_feeds_the_loaders_batches_and_weights(dataset: CohortDataset, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """On the card: the cache rounds as the CPU does, and (cuDNN deterministic) trains the loader's weights
    with channels-last bf16 autocast."""
    from medssl.losses import build_loss
    from medssl.methods.siamese import SiameseContrastive

    cuda = torch.device("cuda")
    cohort = DeviceCohort.build(dataset, cuda, batch_size=5, progress=False)
    assert cohort.device.type == "cuda" and all(v.device.type == "cuda" for v in cohort.labels.values())
    sampler = ResumableSampler(len(dataset), 4, seed=3)
    for got, want in zip(cached_batches(cohort, sampler, lambda b: b, 100), loader_batches(dataset, sampler)):
        assert torch.equal(got["image"].cpu(), want["image"].to(torch.bfloat16).float())
        assert torch.equal(got["site"].cpu(), want["site"])
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    config = cfg(device="cuda", precision="bf16", channels_last=True, epochs=2, batch_size=6)

    def method() -> SiameseContrastive:  # medssl's NT-Xent: the toy loss builds its targets on the CPU
        base = make_method()
        return SiameseContrastive(base.backbone, base.head, build_loss("infonce", temperature=0.5))

    train_loop(method(), Bf16Rounded(dataset), noise_views, config, tmp_path / "loader", tensorboard=False)
    train_loop(method(), cohort, noise_views, config, tmp_path / "cache", tensorboard=False)
    loader, cached = state_of(tmp_path / "loader"), state_of(tmp_path / "cache")
    for key in loader:
        assert torch.equal(loader[key], cached[key]), key
