"""EMA update and schedules; collapse statistics (std, effective rank) and their warning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from medssl.methods.monitoring import CollapseMonitor, effective_rank, embedding_std
from medssl.models.momentum import (
    cosine_schedule,
    linear_warmup,
    momentum_copy,
    update_momentum,
)


def test_ema_update_equals_the_formula_and_copies_buffers() -> None:
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online(torch.randn(5, 3))  # moves the BN running statistics
    before = [p.clone() for p in target.parameters()]
    update_momentum(online, target, 0.9)
    for old, new, theta in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta.detach())
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)
    update_momentum(online, target, 1.0)  # momentum 1 freezes the parameters
    update_momentum(online, target, 0.0)  # momentum 0 copies them
    for new, theta in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(new, theta.detach())
    with pytest.raises(ValueError):
        update_momentum(online, target, 1.5)


def test_cosine_schedule_endpoints_and_midpoint() -> None:
    assert cosine_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    k, total = 30, 100  # BYOL: tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
    assert cosine_schedule(k, total, 0.99, 1.0) == pytest.approx(
        1 - 0.01 * (math.cos(math.pi * k / total) + 1) / 2)
    assert cosine_schedule(500, 100, 0.9, 1.0) == 1.0
    assert linear_warmup(0, 10, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(5, 10, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(10, 10, 0.04, 0.07) == linear_warmup(3, 0, 0.04, 0.07) == 0.07


def test_embedding_std_matches_numpy() -> None:
    z = torch.randn(20, 5, dtype=torch.float64)
    a = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    assert float(embedding_std(z)) == pytest.approx(a.std(axis=0, ddof=1).mean(), rel=1e-6)
    assert float(embedding_std(torch.ones(6, 4))) == pytest.approx(0.0, abs=1e-7)


def test_effective_rank_closed_forms() -> None:
    q, _ = torch.linalg.qr(torch.randn(16, 6))
    assert float(effective_rank(q)) == pytest.approx(6.0, rel=1e-4)  # equal singular values
    line = torch.randn(16, 1) @ torch.randn(1, 6)
    assert float(effective_rank(line)) == pytest.approx(1.0, rel=1e-3)
    s = torch.tensor([3.0, 1.0])  # exp(entropy of (3/4, 1/4))
    z = torch.diag(s)
    p = np.array([0.75, 0.25])
    assert float(effective_rank(z)) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)


def test_collapse_monitor_warns_only_on_collapse() -> None:
    monitor = CollapseMonitor(threshold=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = monitor(torch.randn(32, 8))
    assert set(stats) == {"std", "rank"} and float(stats["rank"]) > 5
    collapsed = torch.ones(32, 8) + 1e-4 * torch.randn(32, 8)
    with pytest.warns(RuntimeWarning, match="collapse"):
        stats = monitor(collapsed)
    assert float(stats["std"]) < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CollapseMonitor(threshold=0.0)(collapsed)  # disabled
