"""ComBat harmonisation (Johnson et al. 2007; Fortin et al. 2018) as an sklearn-style fit/transform.

Model, per feature v: ``x_iv = a_v + c_i b_v + g_sv + sqrt(d_sv) e_iv`` for subject i at site s with
covariates c_i (age, sex: preserved, not removed). ``fit`` on training sites:

1. OLS of x on [site one-hot, covariates] -> site intercepts and ``b``; grand mean
   ``a = sum_s (n_s / n) intercept_s``; pooled variance ``v = mean_i (x - fit)^2``.
2. Standardise ``z = (x - a - c b) / sqrt(v)``; per site ``g_hat = mean_s z``, ``d_hat = var_s z`` (ddof 1).
3. Empirical Bayes (``eb=True``): normal prior on g (mean, variance over features), inverse-gamma on d
   (method of moments), then the fixed point ``g* = (n t2 g_hat + d* g_bar) / (n t2 + d*)``,
   ``d* = (b + sum (z - g*)^2 / 2) / (n / 2 + a - 1)``. Without EB, ``g* = g_hat``, ``d* = d_hat``.

``transform``: ``x* = sqrt(v) (z - g*_s) / sqrt(d*_s) + a + c b``.

Covariates at transform time: the label we predict (age) is a covariate, so using true test ages would
leak it into the features. ``transform(covariates=None)`` uses the *training mean* covariates for every
row, which makes the map label-free: ``x* = x / sqrt(d*_s) + const_s`` per site and feature. Passing
covariates reproduces textbook ComBat (the adjusted data of the training set).

Sites unseen in training (OpenBHB's external sites) have no estimated g, d. ``unseen="error"`` (default)
refuses them; ``unseen="grand_mean"`` uses ``g = 0, d = 1`` (the grand-mean site), i.e. their features
pass through unchanged, so ComBat cannot remove an unseen site's effect. This is why ComBat does not
help the external MAE in the OpenBHB paper (the seed's ComBat row: ResNet ext MAE 4.76 vs 4.18).

Hand-rolled: neuroHarmonize 2.5.2 would downgrade numpy/pandas (``pip install --dry-run``), and
neuroCombat (last release 0.2.12, 2021) has no estimator API. This implementation matches
neuroCombat 0.2.12 to ~1e-6 on a stored fixture (``tests/eval/data/neurocombat_0.2.12.npz``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from medssl.errors import ConfigError, DataError


def _eb_fixed_point(
    z: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """EB shrinkage of one site's (p,) ``g_hat``, ``d_hat`` given its standardised data z (n_s, p)."""
    n = len(z)
    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
    m, s2 = d_hat.mean(), d_hat.var(ddof=1)
    a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
    g, d = g_hat, d_hat
    for it in range(1, max_iter + 1):
        g_new = (n * t2 * g_hat + d * g_bar) / (n * t2 + d)
        d_new = (b + 0.5 * ((z - g_new) ** 2).sum(axis=0)) / (n / 2.0 + a - 1.0)
        change = max(np.max(np.abs(g_new - g) / np.abs(g).clip(1e-12)), np.max(np.abs(d_new - d) / d.clip(1e-12)))
        g, d = g_new, d_new
        if change < tol:
            return g, d, it
    return g, d, max_iter


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat fitted on training sites; see the module docstring for the model and unseen-site behaviour.

    Args:
        eb: empirical-Bayes shrinkage of site parameters (parametric priors, as neuroCombat).
        unseen: ``"error"`` or ``"grand_mean"`` for sites absent from ``fit``.
        tol, max_iter: convergence of the EB fixed point (relative change).

    Shapes: ``X`` (n, p), ``sites`` (n,), ``covariates`` (n, q) or None.
    """

    def __init__(self, *, eb: bool = True, unseen: str = "error", tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.eb = eb
        self.unseen = unseen
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, sites: Any, covariates: Any = None) -> "ComBat":
        X = np.asarray(X, dtype=np.float64)
        sites = np.asarray(sites)
        self.sites_, inverse, counts = np.unique(sites, return_inverse=True, return_counts=True)
        if len(self.sites_) < 2:
            raise DataError("ComBat needs at least two training sites")
        if counts.min() < 2:
            raise DataError(f"ComBat needs >= 2 subjects per site; site {self.sites_[counts.argmin()]!r} has 1")
        C = self._covariates(covariates, len(X), fitting=True)
        onehot = np.eye(len(self.sites_))[inverse]
        coef = np.linalg.lstsq(np.hstack([onehot, C]), X, rcond=None)[0]
        self.grand_mean_ = (counts / len(X)) @ coef[: len(self.sites_)]
        self.beta_ = coef[len(self.sites_) :]
        resid = X - np.hstack([onehot, C]) @ coef
        var = (resid**2).mean(axis=0)
        self.constant_ = var <= 1e-12 * np.maximum(1.0, np.abs(self.grand_mean_))
        self.var_pooled_ = np.where(self.constant_, 1.0, var)
        z = (X - self.grand_mean_ - C @ self.beta_) / np.sqrt(self.var_pooled_)
        self.gamma_ = np.zeros((len(self.sites_), X.shape[1]))
        self.delta_ = np.ones((len(self.sites_), X.shape[1]))
        self.n_iter_ = np.zeros(len(self.sites_), dtype=int)
        keep = ~self.constant_
        if self.eb and keep.sum() < 2:
            raise DataError("ComBat eb=True pools priors over features and needs >= 2 non-constant features")
        for k in range(len(self.sites_)):
            zk = z[inverse == k][:, keep]
            g_hat, d_hat = zk.mean(axis=0), zk.var(axis=0, ddof=1)
            if self.eb:
                g_hat, d_hat, self.n_iter_[k] = _eb_fixed_point(zk, g_hat, d_hat, self.tol, self.max_iter)
            self.gamma_[k, keep], self.delta_[k, keep] = g_hat, d_hat
        if (self.delta_ <= 0).any():
            raise DataError("ComBat: a feature is constant within a training site; drop it or use eb=True")
        return self

    def _covariates(self, covariates: Any, n: int, fitting: bool = False) -> np.ndarray:
        if covariates is None:
            if fitting:
                self.cov_mean_ = np.zeros(0)
            return np.tile(self.cov_mean_, (n, 1))
        C = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        if not np.isfinite(C).all():
            raise DataError("ComBat covariates contain NaN/inf (e.g. unknown sex); drop that covariate")
        if fitting:
            self.cov_mean_ = C.mean(axis=0)
        elif C.shape[1] != len(self.cov_mean_):
            raise ValueError(f"ComBat was fitted with {len(self.cov_mean_)} covariates, got {C.shape[1]}")
        return C

    def transform(self, X: Any, sites: Any, covariates: Any = None) -> np.ndarray:
        """Harmonise ``X``; ``covariates=None`` uses the training-mean covariates (label-free)."""
        check_is_fitted(self, "gamma_")
        if self.unseen not in ("error", "grand_mean"):
            raise ConfigError(f"ComBat unseen={self.unseen!r}; expected 'error' or 'grand_mean'")
        X = np.asarray(X, dtype=np.float64)
        sites = np.asarray(sites)
        known = np.isin(sites, self.sites_)
        if not known.all() and self.unseen == "error":
            raise DataError(
                f"ComBat was not fitted on site(s) {sorted(set(sites[~known].tolist()), key=str)[:5]}; "
                "pass unseen='grand_mean' to leave their site effect in place (g=0, d=1)"
            )
        stand = self.grand_mean_ + self._covariates(covariates, len(X)) @ self.beta_
        z = (X - stand) / np.sqrt(self.var_pooled_)
        k = np.searchsorted(self.sites_, sites[known])
        z[known] = (z[known] - self.gamma_[k]) / np.sqrt(self.delta_[k])
        out = np.sqrt(self.var_pooled_) * z + stand
        out[:, self.constant_] = X[:, self.constant_]
        return out

    def fit_transform(self, X: Any, sites: Any = None, covariates: Any = None) -> np.ndarray:  # type: ignore[override]
        """``fit`` then ``transform`` with the same covariates (textbook ComBat on the training set)."""
        return self.fit(X, sites, covariates).transform(X, sites, covariates)
