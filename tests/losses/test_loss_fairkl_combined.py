"""FairKL (paper/code, discrete/continuous) against loops, and the combined objective."""

from __future__ import annotations

import pytest
import torch
from loss_inputs import make_inputs, to_lists
from loss_reference import reference_fairkl

from medssl.losses import CombinedObjective, build_loss

CASES = [
    {"mode": "paper"},
    {"mode": "paper", "temperature": 0.5},
    {"mode": "paper", "kernel": "rbf", "sigma": 3.0},
    {"mode": "paper", "kernel": "cauchy", "sigma": 0.2, "views": "first"},
    {"mode": "code"},
    {"mode": "code", "views": "both", "kld": 0.5},
    {"mode": "code", "kernel": "rbf", "sigma": 3.0},
]


def _inputs(n, continuous, seed=0):
    z1, z2, y = make_inputs(
        n,
        d=5,
        scenario="ties" if not continuous else "random",
        discrete=not continuous,
        seed=seed,
    )
    bias = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed))
    return z1, z2, y, bias


@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("n", [3, 6])
def test_fairkl_matches_loops(kw, n):
    continuous = kw.get("kernel", "dirac") != "dirac"
    z1, z2, y, bias = _inputs(n, continuous, seed=n)
    got = build_loss("fairkl", **kw)(z1, z2, y, bias)
    ref_kw = dict(kw)
    ref_kw.setdefault("views", "both" if kw["mode"] == "paper" else "first")
    ref = reference_fairkl(
        to_lists(z1), to_lists(z2), to_lists(y), to_lists(bias), **ref_kw
    )
    torch.testing.assert_close(
        got, torch.tensor(ref, dtype=torch.float64), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_fairkl_continuous_with_dirac_equals_discrete(mode):
    z1, z2, _, bias = _inputs(8, True, seed=2)
    y = torch.tensor(
        [30.0, 30.0, 41.0, 41.0, 30.0, 52.0, 52.0, 41.0], dtype=torch.float64
    )
    classes = torch.tensor([0, 0, 1, 1, 0, 2, 2, 1])
    torch.testing.assert_close(
        build_loss("fairkl", mode=mode, kernel="dirac")(z1, z2, y, bias),
        build_loss("fairkl", mode=mode)(z1, z2, classes, bias),
    )


def test_fairkl_properties():
    z1, z2, y, bias = _inputs(8, True, seed=3)
    reg = build_loss("fairkl", kernel="rbf", sigma=3.0)
    value = reg(z1, z2, y, bias)
    assert value.item() >= 0  # a sum of KL divergences
    torch.testing.assert_close(reg(z2, z1, y, bias), value)
    perm = torch.randperm(8)
    torch.testing.assert_close(reg(z1[perm], z2[perm], y[perm], bias[perm]), value)
    one_site = torch.zeros_like(bias)  # no conflicting pairs: both KL terms are skipped
    assert reg(z1, z2, y, one_site).item() == 0.0
    z1.requires_grad_(True)
    build_loss("fairkl", mode="code")(z1, z2, y.round(), bias).backward()
    assert torch.isfinite(z1.grad).all()
    bf = reg(z1.detach().bfloat16(), z2.bfloat16(), y, bias)
    assert abs(bf.item() - reg(z1.detach().float(), z2.float(), y, bias).item()) < 1e-2


def test_combined_objective():
    z1, z2, y, bias = _inputs(6, True, seed=4)
    loss, reg = (
        build_loss("yaware", sigma=3.0),
        build_loss("fairkl", kernel="rbf", sigma=3.0),
    )
    out = CombinedObjective(loss, reg, alpha=0.5, lam=2.0)(z1, z2, y, bias)
    torch.testing.assert_close(out["contrastive"], loss(z1, z2, y))
    torch.testing.assert_close(out["regularizer"], reg(z1, z2, y, bias))
    torch.testing.assert_close(
        out["loss"], 0.5 * out["contrastive"] + 2.0 * out["regularizer"]
    )
    plain = CombinedObjective(loss)(z1, z2, y, bias)
    assert plain["regularizer"].item() == 0.0
    torch.testing.assert_close(plain["loss"], plain["contrastive"])
    qz, qy = (
        torch.randn(4, 5, dtype=torch.float64),
        20 + 5 * torch.randn(4, dtype=torch.float64),
    )
    torch.testing.assert_close(
        CombinedObjective(loss)(z1, z2, y, queue_z=qz, queue_y=qy)["contrastive"],
        loss(z1, z2, y, queue_z=qz, queue_y=qy),
    )
    assert "lam=2.0" in repr(CombinedObjective(loss, reg, alpha=0.5, lam=2.0))
    for bad in ({"alpha": -1.0}, {"lam": float("inf")}):
        with pytest.raises(ValueError):
            CombinedObjective(loss, reg, **bad)
