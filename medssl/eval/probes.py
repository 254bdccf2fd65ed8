"""Downstream probes fitted on frozen features.

``openbhb_age`` and ``openbhb_site`` are the RAMP server's probes verbatim (kit ``problem.py``): no feature
scaling, 5-fold grid search, ``r2`` for age and ``balanced_accuracy`` for site. Only these two give
numbers comparable with the leaderboard. The other probes (``scaled_*``, ``knn_*``, ``mlp_*``) are
opt-in alternatives; outputs label them with their registry name so they are never mistaken for the
challenge protocol. Every factory returns an unfitted sklearn estimator.

One deviation that changes no estimator or grid: the server leaves saga's sample order to numpy's global
generator (``random_state=None``), so its site probe depends on whatever drew from it before; medssl
fixes it (``random_state=0``), so a result repeats, and equals the serial one when the grid's fits run in
parallel (:func:`fit_probe`).
"""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medssl.errors import ConfigError
from medssl.eval.metrics import balanced_accuracy, mae
from medssl.registry import PROBES

GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0)
"""The kit's grid for Ridge ``alpha`` and LogisticRegression ``C``."""

CHALLENGE_PROBES = {"age": "openbhb_age", "site": "openbhb_site"}
ALTERNATIVE_PROBES = {
    "scaled": {"age": "scaled_age", "site": "scaled_site"},
    "knn": {"age": "knn_age", "site": "knn_site"},
    "mlp": {"age": "mlp_age", "site": "mlp_site"},
}


@PROBES.register("openbhb_age")
def openbhb_age(n_jobs: int | None = None) -> BaseEstimator:
    """RAMP ``AgeEstimator``: ``GridSearchCV(Ridge(), alpha in GRID, cv=5, scoring="r2")``, no scaling."""
    return GridSearchCV(Ridge(), {"alpha": list(GRID)}, cv=5, scoring="r2", n_jobs=n_jobs)


@PROBES.register("openbhb_site")
def openbhb_site(n_jobs: int | None = None, random_state: int | None = 0) -> BaseEstimator:
    """RAMP ``SiteEstimator``: ``GridSearchCV(LogisticRegression(solver="saga", max_iter=150), C in GRID,
    cv=5, scoring="balanced_accuracy")``, no scaling (saga may not converge on badly scaled features);
    saga's sample order seeded by ``random_state`` (module docstring)."""
    return GridSearchCV(
        LogisticRegression(solver="saga", max_iter=150, random_state=random_state),
        {"C": list(GRID)},
        cv=5,
        scoring="balanced_accuracy",
        n_jobs=n_jobs,
    )


@PROBES.register("scaled_age")
def scaled_age(n_jobs: int | None = None) -> BaseEstimator:
    """Not the challenge probe: ``StandardScaler`` then the ``openbhb_age`` grid search."""
    return GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": list(GRID)},
        cv=5,
        scoring="r2",
        n_jobs=n_jobs,
    )


@PROBES.register("scaled_site")
def scaled_site(n_jobs: int | None = None, random_state: int | None = 0) -> BaseEstimator:
    """Not the challenge probe: ``StandardScaler`` then the ``openbhb_site`` grid search (max_iter 1000)."""
    return GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(solver="saga", max_iter=1000, random_state=random_state)),
        {"logisticregression__C": list(GRID)},
        cv=5,
        scoring="balanced_accuracy",
        n_jobs=n_jobs,
    )


@PROBES.register("knn_age")
def knn_age(n_jobs: int | None = None) -> BaseEstimator:
    """Not the challenge probe: standardised k-NN regression, ``k in {5, 10, 20}`` by 5-fold ``r2``."""
    return GridSearchCV(
        make_pipeline(StandardScaler(), KNeighborsRegressor()),
        {"kneighborsregressor__n_neighbors": [5, 10, 20]},
        cv=5,
        scoring="r2",
        n_jobs=n_jobs,
    )


@PROBES.register("knn_site")
def knn_site(n_jobs: int | None = None) -> BaseEstimator:
    """Not the challenge probe: standardised k-NN classification, ``k in {5, 10, 20}`` by 5-fold BAcc."""
    return GridSearchCV(
        make_pipeline(StandardScaler(), KNeighborsClassifier()),
        {"kneighborsclassifier__n_neighbors": [5, 10, 20]},
        cv=5,
        scoring="balanced_accuracy",
        n_jobs=n_jobs,
    )


@PROBES.register("mlp_age")
def mlp_age(n_jobs: int | None = None, random_state: int = 0) -> BaseEstimator:
    """Not the challenge probe: standardised one-hidden-layer (256) MLP regressor, early stopping."""
    del n_jobs
    return make_pipeline(
        StandardScaler(),
        MLPRegressor((256,), early_stopping=True, max_iter=500, random_state=random_state),
    )


@PROBES.register("mlp_site")
def mlp_site(n_jobs: int | None = None, random_state: int = 0) -> BaseEstimator:
    """Not the challenge probe: standardised one-hidden-layer (256) MLP classifier, early stopping."""
    del n_jobs
    return make_pipeline(
        StandardScaler(),
        MLPClassifier((256,), early_stopping=True, max_iter=500, random_state=random_state),
    )


def probe_jobs(n_jobs: int | None = None) -> int:
    """Threads fitting one grid search: ``n_jobs`` (negative as in joblib: ``-1`` every CPU), by default
    (None) every CPU this process may use (``joblib.cpu_count``, which honours cgroup quotas)."""
    if n_jobs == 0 or isinstance(n_jobs, bool):
        raise ConfigError(f"n_jobs={n_jobs!r} must be a positive number of parallel fits, negative (-1 = every "
                          "CPU) or None (the default, every CPU)")
    cpus = joblib.cpu_count()
    if n_jobs is None:
        return cpus
    return max(1, cpus + 1 + n_jobs) if n_jobs < 0 else n_jobs


def fit_probe(probe: BaseEstimator, X: np.ndarray, y: np.ndarray, n_jobs: int | None = None) -> BaseEstimator:
    """``probe.fit(X, y)``, a grid search's candidate x fold fits run on ``probe_jobs(n_jobs)`` threads.

    Threads, not processes: saga's and Ridge's solvers release the GIL, nothing is started or copied,
    and every fit's warnings reach the caller (the protocol counts ConvergenceWarnings). BLAS runs on one
    thread per fit, serial or not: ``n_jobs`` threads use ``n_jobs`` cores, and the fitted probe is the
    same bit for bit whatever ``n_jobs`` and the core count (a multi-threaded BLAS sums in another order:
    Ridge on float32 features moved MAE by 2e-7 relative).
    """
    with joblib.parallel_config(backend="threading", n_jobs=probe_jobs(n_jobs)), \
            threadpool_limits(1, user_api="blas"):
        return probe.fit(X, y)


def fit_and_score_probes(
    x_train: np.ndarray,
    meta_train: pd.DataFrame,
    x_val: np.ndarray,
    meta_val: pd.DataFrame,
    n_jobs: int | None = None,
) -> dict[str, float]:
    """Quick monitor during pretraining: the challenge probes fitted on train, scored on validation rows.

    Returns:
        ``probe_mae_age`` (all validation rows), ``probe_bacc_site`` (validation rows of sites seen in
        train; NaN if none) and ``probe_site_chance`` (1 / train sites). Convergence warnings are muted.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        age = fit_probe(openbhb_age(), x_train, meta_train["age"].to_numpy(np.float64), n_jobs)
        site = fit_probe(openbhb_site(), x_train, meta_train["site"].to_numpy(), n_jobs)
    seen = meta_val["site"].isin(meta_train["site"]).to_numpy()
    bacc = balanced_accuracy(meta_val["site"][seen], site.predict(x_val[seen])) if seen.any() else float("nan")
    return {
        "probe_mae_age": mae(meta_val["age"].to_numpy(np.float64), age.predict(x_val)),
        "probe_bacc_site": bacc,
        "probe_site_chance": 1.0 / meta_train["site"].nunique(),
    }
