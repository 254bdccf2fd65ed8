"""Kernels (closed forms), diagnostics and the sigma rule of thumb."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medssl.losses import contrastive_diagnostics, suggest_sigma
from medssl.losses.diagnostics import alignment, effective_positives, uniformity
from medssl.registry import KERNELS


def test_kernel_closed_forms():
    a, b = torch.tensor([[20.0, 1.0]]), torch.tensor([[25.0, 3.0]])
    rbf = KERNELS.build("rbf", sigma=[5.0, 2.0])(a, b).item()
    assert rbf == pytest.approx(math.exp(-0.5 * (1 + 1)))
    gauss = KERNELS.build("gaussian", sigma=1.0)(
        torch.zeros(1, 1), torch.zeros(1, 1)
    ).item()
    assert gauss == pytest.approx(1 / math.sqrt(2 * math.pi))  # about 0.399
    assert KERNELS.build("cauchy", sigma=0.5)(
        a[:, :1], b[:, :1]
    ).item() == pytest.approx(1 / (0.5 * 25 + 1))
    dirac = KERNELS.build("dirac")(
        torch.tensor([[1], [2]]), torch.tensor([[1], [1], [2]])
    )
    assert dirac.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="2 dimensions"):
        KERNELS.build("rbf", sigma=[1.0, 2.0, 3.0])(a, b)


def test_effective_positives_and_similarities():
    wn = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert effective_positives(wn).tolist() == [2.0, 1.0, 0.0]
    z = torch.randn(6, 8)
    d = contrastive_diagnostics(z, z)  # identical views, SimCLR positives
    assert d["eff_positives"] == pytest.approx(1.0)
    assert d["pos_sim"] == pytest.approx(1.0, abs=1e-6) and d[
        "alignment"
    ] == pytest.approx(0.0, abs=1e-6)
    zn = torch.nn.functional.normalize(z, dim=1)
    cos = zn @ zn.T
    two = torch.cat(
        [cos, cos], 1
    )  # anchor i against both views; drop i and its partner
    neg = sum(two[i, j].item() for i in range(6) for j in range(12) if j % 6 != i) / (
        6 * 10
    )
    assert d["neg_sim"] == pytest.approx(neg, abs=1e-6)
    classes = torch.tensor([0, 0, 0, 1, 1, 2])
    d = contrastive_diagnostics(
        z, torch.randn(6, 8), classes, kernel="dirac", sigma=None
    )
    # |P(a)| = 2 * class size - 1: (5, 5, 5, 3, 3, 1) for each view
    assert d["eff_positives"] == pytest.approx((3 * 5 + 2 * 3 + 1) / 6)


def test_alignment_uniformity_closed_forms():
    e = torch.eye(2)
    assert alignment(e, torch.flip(e, [0])).item() == pytest.approx(
        2.0
    )  # ||e0 - e1||^2
    assert uniformity(e).item() == pytest.approx(-4.0)  # log exp(-2 * 2)
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(
        -8.0
    )


def test_suggest_sigma_rules():
    rng = np.random.default_rng(0)
    age = rng.normal(40, 15, size=3000)
    std = age.std(ddof=1)
    assert suggest_sigma(age) == pytest.approx(std * 3000 ** (-1 / 5))
    assert suggest_sigma(torch.tensor(age), rule="silverman") == pytest.approx(
        std * (3000 * 3 / 4) ** (-1 / 5)
    )
    assert 2.0 < suggest_sigma(age) < 5.0  # years, between the published 2 and 5
    multi = suggest_sigma(np.stack([age, age / 10], 1))
    assert len(multi) == 2 and multi[0] == pytest.approx(10 * multi[1])
    for bad in ([1.0], [3.0, 3.0, 3.0], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            suggest_sigma(bad)
    with pytest.raises(ValueError, match="rule"):
        suggest_sigma(age, rule="terrell")
