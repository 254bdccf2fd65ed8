"""The training loop on a toy problem: learning, exact resume, schedules and the non-finite guard."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medssl.config import TrainConfig
from medssl.engine.optim import lr_factor
from medssl.engine.sampling import ResumableSampler
from medssl.engine.train import NonFiniteLossError, train_loop
from medssl.methods.siamese import SiameseContrastive
from medssl.models.tiny import TinyCNN3d


class ToyVolumes(torch.utils.data.Dataset):
    """16 volumes of 16^3 whose mean intensity encodes a label (a planted signal)."""

    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 4
        self.x = torch.randn(n, 1, 16, 16, 16, generator=g) * 0.3 + self.y.view(-1, 1, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "age": self.y[i].float(), "index": torch.tensor(i)}


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor | None = None,
            bias: torch.Tensor | None = None, temperature: float = 0.5) -> torch.Tensor:
    """Reference NT-Xent written independently of medssl.losses (view-major, mean over 2N)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(-math.inf)
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class NTXent(nn.Module):
    def forward(self, z1, z2, y=None, bias=None):  # type: ignore[no-untyped-def]
        return nt_xent(z1, z2)


def noise_views(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(len(x), device=x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(-1), x)
    return x + 0.1 * torch.randn_like(x)


def make_method() -> SiameseContrastive:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))
    return SiameseContrastive(TinyCNN3d(width=4), head, NTXent())


def cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(epochs=3, batch_size=8, lr=3e-3, device="cpu", log_every=1, schedule="cosine")
    return TrainConfig(**{**base, **kw})


def state_of(run_dir) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["method"]


def test_loss_decreases_on_a_planted_signal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = train_loop(make_method(), ToyVolumes(), noise_views, cfg(epochs=8), tmp_path,
                         tensorboard=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    import json

    losses = [json.loads(ln)["train/loss"] for ln in lines if "train/loss" in json.loads(ln)]
    assert summary["step"] == 16 and len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(  # type: ignore[no-untyped-def]
        tmp_path, monkeypatch) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_loop(make_method(), ToyVolumes(), noise_views, cfg(), straight, tensorboard=False)

    import medssl.engine.train as engine

    real_save = engine.save_checkpoint

    def save_then_die(path, **state):  # type: ignore[no-untyped-def]
        real_save(path, **state)
        raise KeyboardInterrupt  # the process is killed right after the first checkpoint

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_loop(make_method(), ToyVolumes(), noise_views, cfg(), split, tensorboard=False)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    # a fresh process would rebuild the method from scratch, then resume from last.pt
    summary = train_loop(make_method(), ToyVolumes(), noise_views, cfg(), split, tensorboard=False)
    assert summary["epoch"] == 3
    a, b = state_of(straight), state_of(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [int(ln.split('"step": ')[1].split(",")[0])
             for ln in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # no duplicated records after the resume


def test_non_finite_loss_stops_with_a_clear_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Exploding(nn.Module):
        def forward(self, z1, z2, y=None, bias=None):  # type: ignore[no-untyped-def]
            return (z1.sum() + z2.sum()) * float("nan")

    method = SiameseContrastive(TinyCNN3d(width=4), nn.Identity(), Exploding())
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 0"):
        train_loop(method, ToyVolumes(), noise_views, cfg(), tmp_path, tensorboard=False)


def test_sampler_shards_are_disjoint_and_cover_whole_batches() -> None:
    shards = [ResumableSampler(21, 4, seed=3, rank=r, world=2).indices() for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 8
    assert not set(shards[0]) & set(shards[1])
    s = ResumableSampler(21, 4, seed=3)
    full = list(s)
    s.set_epoch(0, start_batch=2)
    assert list(s) == full[8:]


def test_lr_schedules_match_their_formulas() -> None:
    assert lr_factor(0, 10, 100, "cosine", warmup_epochs=1) == pytest.approx(0.1)
    assert lr_factor(10, 10, 100, "cosine", warmup_epochs=1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, "cosine", warmup_epochs=1) == pytest.approx(0.5)
    assert lr_factor(250, 10, 1000, "step", step_every=10, step_gamma=0.9) == pytest.approx(0.9**2)


def test_read_scalars_takes_the_one_element_tensors_as_floats() -> None:
    from medssl.engine.train import read_scalars

    out = {"loss": torch.tensor(1.5), "std": torch.tensor([0.25], dtype=torch.bfloat16),
           "z": torch.ones(3), "name": "x"}
    assert read_scalars(out) == {"loss": 1.5, "std": 0.25}
