"""Closed forms and independent (loop / numpy) computations of the non-contrastive losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medssl.losses.barlow_twins import BarlowTwinsLoss
from medssl.losses.byol import BYOLLoss
from medssl.losses.dino import DINOLoss
from medssl.losses.vicreg import VICRegLoss
from medssl.registry import LOSSES


def orthogonal_standardised(n: int = 8, d: int = 4) -> torch.Tensor:
    """(n, d) with zero-mean columns, unit biased variance, pairwise orthogonal (Hadamard rows)."""
    h = torch.tensor([[1.0]])
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[:, 1 : d + 1].double()  # drop the constant column: each column has mean 0, var 1


def barlow_reference(z1: np.ndarray, z2: np.ndarray, lam: float, eps: float) -> float:
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[t, i] * b[t, j] for t in range(n)) / n
            total += (1 - c) ** 2 if i == j else lam * c**2
    return total


def test_barlow_twins_is_zero_for_identical_standardised_views_with_diagonal_correlation() -> None:
    z = orthogonal_standardised()
    loss = BarlowTwinsLoss(lambda_offdiag=5e-3, eps=1e-12)
    assert float(loss(z, z.clone())) == pytest.approx(0.0, abs=1e-9)


def test_barlow_twins_matches_a_loop_over_dimension_pairs() -> None:
    z1, z2 = torch.randn(10, 5, dtype=torch.float64), torch.randn(10, 5, dtype=torch.float64)
    expected = barlow_reference(z1.numpy(), z2.numpy(), lam=0.3, eps=1e-5)
    assert float(BarlowTwinsLoss(0.3)(z1, z2)) == pytest.approx(expected, rel=1e-10)


def test_barlow_twins_registered_and_ignores_labels() -> None:
    loss = LOSSES.build("barlow_twins", lambda_offdiag=0.01)
    z1, z2 = torch.randn(6, 3), torch.randn(6, 3)
    assert float(loss(z1, z2, y=torch.arange(6.0), bias=torch.zeros(6))) == float(loss(z1, z2))
    with pytest.raises(ValueError, match="at least 2"):
        loss(z1[:1], z2[:1])
    with pytest.raises(ValueError, match="same shape"):
        loss(z1, z2[:, :2])
    with pytest.raises(ValueError):
        BarlowTwinsLoss(lambda_offdiag=-1)


def test_vicreg_variance_term_is_zero_when_every_std_reaches_gamma() -> None:
    z = torch.randn(64, 6, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0) * torch.tensor([1.0, 2, 2, 3, 1.0, 10], dtype=torch.float64)
    terms = VICRegLoss(gamma=1.0).terms(z, 2 * z)
    assert float(terms["variance"]) == 0.0
    shrunk = VICRegLoss(gamma=1.0).terms(0.5 * z, 0.5 * z)  # dims 0 and 4 at std 0.5 < 1
    expected = 0.5 * 2 * (2 * (1 - math.sqrt(0.25 + 1e-4)) / 6)
    assert float(shrunk["variance"]) == pytest.approx(expected, rel=1e-9)


def test_vicreg_terms_match_numpy_and_paper_coefficients() -> None:
    z1, z2 = torch.randn(12, 4, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    a, b = z1.numpy(), z2.numpy()
    inv = ((a - b) ** 2).mean()
    var = np.mean([np.mean(np.maximum(0, 1 - np.sqrt(x.var(0, ddof=1) + 1e-4))) for x in (a, b)])
    cov = 0.0
    for x in (a, b):
        c = np.cov(x, rowvar=False)
        cov += (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / 4
    loss = LOSSES.build("vicreg")
    assert (loss.sim_coeff, loss.std_coeff, loss.cov_coeff, loss.gamma) == (25, 25, 1, 1)
    terms = loss.terms(z1, z2)
    assert float(terms["invariance"]) == pytest.approx(inv, rel=1e-10)
    assert float(terms["variance"]) == pytest.approx(var, rel=1e-10)
    assert float(terms["covariance"]) == pytest.approx(cov, rel=1e-10)
    assert float(loss(z1, z2)) == pytest.approx(25 * inv + 25 * var + cov, rel=1e-10)


def test_byol_and_simsiam_losses_at_identical_predictions() -> None:
    p = torch.randn(5, 7)
    assert float(BYOLLoss("negative_cosine")(p, p, p, p)) == pytest.approx(-2.0, abs=1e-6)
    assert float(BYOLLoss("normalized_mse")(p, p, p, p)) == pytest.approx(0.0, abs=1e-6)
    # scale invariance: predictions and targets are normalised
    assert float(BYOLLoss("normalized_mse")(3 * p, p, p, 0.5 * p)) == pytest.approx(0.0, abs=1e-6)


def test_byol_loss_equals_the_normalised_mse_formula_and_stops_target_gradients() -> None:
    p1, p2 = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    t1, t2 = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=1, keepdim=True)

    expected = 0.5 * ((unit(p1) - unit(t2)) ** 2).sum(1).mean() \
        + 0.5 * ((unit(p2) - unit(t1)) ** 2).sum(1).mean()
    loss = BYOLLoss("normalized_mse")(p1, p2, t1, t2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    neg_cos = BYOLLoss("negative_cosine")(p1, p2, t1, t2)
    assert (loss - neg_cos).item() == pytest.approx(2.0, rel=1e-6)
    loss.backward()
    assert p1.grad is not None and t1.grad is None and t2.grad is None


def dino_reference(student: list, teacher: list, center: np.ndarray, ts: float, tt: float) -> float:
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            for n in range(t.shape[0]):
                pt = np.exp((t[n] - center) / tt)
                pt /= pt.sum()
                ls = s[n] / ts - np.log(np.exp(s[n] / ts).sum())
                total += -(pt * ls).sum() / t.shape[0]
            pairs += 1
    return total / pairs


def test_dino_loss_matches_a_loop_and_the_centre_follows_its_ema() -> None:
    k = 6
    loss = DINOLoss(out_dim=k, student_temperature=0.1, center_momentum=0.8)
    loss.center.copy_(torch.randn(1, k))
    teacher = [torch.randn(3, k, dtype=torch.float64) for _ in range(2)]
    student = [torch.randn(3, k, dtype=torch.float64) for _ in range(4)]
    c0 = loss.center.clone()
    expected = dino_reference([s.numpy() for s in student], [t.numpy() for t in teacher],
                              c0[0].double().numpy(), 0.1, 0.05)
    value = loss(student, teacher, teacher_temperature=0.05)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    batch_mean = torch.cat(teacher).mean(0, keepdim=True).float()
    torch.testing.assert_close(loss.center, 0.8 * c0 + 0.2 * batch_mean)
    loss(student, teacher, teacher_temperature=0.05)  # second EMA step
    torch.testing.assert_close(loss.center, 0.8 * (0.8 * c0 + 0.2 * batch_mean) + 0.2 * batch_mean)


def test_dino_loss_rejects_bad_inputs() -> None:
    loss = DINOLoss(out_dim=4)
    with pytest.raises(ValueError, match="teacher_temperature"):
        loss([torch.randn(2, 4)] * 2, [torch.randn(2, 4)], teacher_temperature=0.0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        loss([torch.randn(2, 3)] * 2, [torch.randn(2, 3)], teacher_temperature=0.04)
