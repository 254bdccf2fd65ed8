"""ComBat: closed form without EB, the EB fixed point, neuroCombat parity, and site removal with age kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score

from medssl.errors import DataError
from medssl.eval.combat import ComBat

FIXTURE = Path(__file__).parent / "data" / "neurocombat_0.2.12.npz"


def _sites_with_age(seed: int = 0, per_site: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 sites with shifted age ranges; features = 0.1 age + additive and multiplicative site effects."""
    rng = np.random.default_rng(seed)
    site = np.repeat(np.arange(4), per_site)
    age = rng.uniform(20, 60, len(site)) + 15.0 * site
    shift, scale = rng.normal(0, 3, (4, 10)), rng.uniform(0.5, 2.5, (4, 10))
    X = 0.1 * age[:, None] + shift[site] + scale[site] * rng.normal(0, 1, (len(site), 10))
    return X, site, age


def test_without_eb_matches_the_closed_form() -> None:
    """No covariates, no EB: x* = overall mean + sqrt(pooled within-site var) (x - site mean) / site sd."""
    X, site, _ = _sites_with_age()
    out = ComBat(eb=False).fit_transform(X, site)
    pooled = np.mean(np.concatenate([(X[site == s] - X[site == s].mean(0)) ** 2 for s in range(4)]), axis=0)
    for s in range(4):
        Xs = X[site == s]
        expected = X.mean(0) + np.sqrt(pooled) * (Xs - Xs.mean(0)) / Xs.std(0, ddof=1)
        np.testing.assert_allclose(out[site == s], expected, rtol=1e-10, atol=1e-10)


def test_eb_estimates_satisfy_the_posterior_fixed_point() -> None:
    X, site, age = _sites_with_age(1)
    cb = ComBat(tol=1e-10).fit(X, site, age[:, None])
    design = np.c_[np.eye(4)[site], age]
    resid = X - design @ np.linalg.lstsq(design, X, rcond=None)[0]
    z = (X - cb.grand_mean_ - age[:, None] * cb.beta_[0]) / np.sqrt((resid**2).mean(0))
    for s in range(4):
        zs = z[site == s]
        g_hat, d_hat = zs.mean(0), zs.var(0, ddof=1)
        m, v = d_hat.mean(), d_hat.var(ddof=1)
        a, b = (2 * v + m**2) / v, (m * v + m**3) / v
        g, d, n = cb.gamma_[s], cb.delta_[s], len(zs)
        t2 = g_hat.var(ddof=1)
        np.testing.assert_allclose(g, (n * t2 * g_hat + d * g_hat.mean()) / (n * t2 + d), rtol=1e-8)
        np.testing.assert_allclose(d, (b + 0.5 * ((zs - g) ** 2).sum(0)) / (n / 2 + a - 1), rtol=1e-8)


@pytest.mark.parametrize("eb", [True, False])
def test_matches_neurocombat_reference_output(eb: bool) -> None:
    ref = np.load(FIXTURE)
    out = ComBat(eb=eb).fit_transform(ref["X"], ref["site"], np.c_[ref["age"], ref["sex"]])
    np.testing.assert_allclose(out, ref["eb" if eb else "noeb"], atol=1e-4)


def test_removes_site_effect_and_keeps_age_effect() -> None:
    X, site, age = _sites_with_age(2)
    out = ComBat().fit_transform(X, site, age[:, None])
    site_acc = lambda F: cross_val_score(LogisticRegression(max_iter=2000), F, site, cv=5).mean()  # noqa: E731
    resid = lambda F: F - LinearRegression().fit(age[:, None], F).predict(age[:, None])  # noqa: E731
    assert site_acc(resid(X)) > 0.9 and site_acc(resid(out)) < 0.45  # chance = 0.25
    slopes = LinearRegression().fit(age[:, None], out).coef_.ravel()
    np.testing.assert_allclose(slopes, 0.1, atol=0.04)  # age effect preserved
    # without the age covariate the site-confounded age effect is partly removed with the site
    naive = LinearRegression().fit(age[:, None], ComBat().fit_transform(X, site)).coef_.ravel()
    assert naive.mean() < 0.05


def test_label_free_transform_and_unseen_sites() -> None:
    X, site, age = _sites_with_age(3)
    train = site < 3
    cb = ComBat().fit(X[train], site[train], age[train, None])
    # label-free transform: a per-site affine map x / sqrt(d) + c, the same whatever the row's age
    free = cb.transform(X[train], site[train])
    rows = site[train] == 0
    x0, f0 = X[train][rows], free[rows]
    np.testing.assert_allclose(f0 - f0[0], (x0 - x0[0]) / np.sqrt(cb.delta_[0]), rtol=1e-8, atol=1e-10)
    with pytest.raises(DataError, match="not fitted on site"):
        cb.transform(X[~train], site[~train])
    passthrough = ComBat(unseen="grand_mean").fit(X[train], site[train], age[train, None])
    np.testing.assert_allclose(passthrough.transform(X[~train], site[~train], age[~train, None]), X[~train])
