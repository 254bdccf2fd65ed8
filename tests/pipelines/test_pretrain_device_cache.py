"""``medssl pretrain`` with ``data.cache=device`` on the CPU: checked when the config is read, same encoder as
the DataLoader path fed the same (bf16-rounded) volumes, a cohort too large refused before the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medssl.data.device_cache as device_cache
from medssl.config import PretrainConfig, load_config
from medssl.data.dataset import CohortDataset
from medssl.errors import ConfigError
from medssl.pipelines.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data import make_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort") / "healthy"
    make_synthetic_cohort(out, cohort="healthy", n_subjects=40, n_sites=4, n_external_sites=1,
                          shape=(16, 20, 16), seed=0, layout="hf")
    return out


def tiny(cohort: Path, out: Path, *extra: str) -> PretrainConfig:
    overrides = [f"data.source={cohort}", f"out={out}", "train.epochs=2", "train.batch_size=8",
                 "model.width=4", "train.tensorboard=false", "train.device=cpu", *extra]
    return load_config(ROOT / "configs/debug/tiny_cpu.yaml", overrides, PretrainConfig)


def test_the_cache_is_checked_when_the_config_is_read(cohort: Path, tmp_path: Path) -> None:
    assert tiny(cohort, tmp_path).data.cache == "none"
    with pytest.raises(ConfigError, match=r"data.cache=device .* views.backend=monai .* set views.backend=torch"):
        tiny(cohort, tmp_path, "data.cache=device", "views.backend=monai")
    with pytest.raises(ConfigError, match=r"data.cache must be one of 'none', 'device', got 'disk'"):
        tiny(cohort, tmp_path, "data.cache=disk")
    assert not tmp_path.joinpath("run").exists()


def test_cached_run_trains_the_loaders_encoder(cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths read volumes rounded to bf16 (idempotent for the cache), so the encoders and the
    per-epoch probe (its training split embedded from the cache) must agree exactly."""
    real = CohortDataset._compute
    monkeypatch.setattr(CohortDataset, "_compute", lambda self, i: torch.from_numpy(real(self, i)).to(
        torch.bfloat16).float().numpy())
    runs = {cache: pretrain(tiny(cohort, tmp_path / cache, f"data.cache={cache}", "train.probe_every=1"))
            for cache in ("none", "device")}
    loader, cached = (torch.load(runs[c] / "encoder.pt", weights_only=True) for c in ("none", "device"))
    for key in loader:
        assert torch.equal(loader[key], cached[key]), key
    epochs = [[json.loads(ln) for ln in (runs[c] / "metrics.jsonl").read_text().splitlines() if "epoch/loss" in ln]
              for c in ("none", "device")]
    assert len(epochs[0]) == 2 and all(np.isfinite(r["epoch/probe_mae_age"]) for r in epochs[1])
    for a, b in zip(*epochs):
        assert {k: v for k, v in a.items() if k.startswith("epoch/")} == \
               {k: v for k, v in b.items() if k.startswith("epoch/")}


def test_a_cohort_too_large_is_refused_before_the_run_folder(cohort: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_cache, "free_bytes", lambda device: 50_000)
    with pytest.raises(ConfigError, match=r"needs \d+\.\d kB for \d+ scans of 1x16x20x16 in bfloat16, but cpu "
                                          r"has 50\.0 kB free"):
        pretrain(tiny(cohort, tmp_path / "run", "data.cache=device"))
    assert not (tmp_path / "run").exists()
