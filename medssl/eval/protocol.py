"""The challenge protocol on fixed features: fit the probes on ``train``, score internal and external tests.

As on the RAMP server: both probes are fitted on the train rows' features and labels; age is predicted
on the internal and external tests (MAE, RMSE); site is predicted on the internal test only (BAcc,
chance = 1 / number of train sites); ``challenge_score = mae_external * bacc_site ** 0.3``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from medssl.errors import DataError
from medssl.eval import metrics as M
from medssl.eval.cv import EXTERNAL, INTERNAL, TRAIN, Fold
from medssl.eval.probes import CHALLENGE_PROBES, fit_probe
from medssl.registry import PROBES


def _fit(name: str, X: np.ndarray, y: np.ndarray, n_jobs: int | None) -> tuple[Any, int]:
    """Fit probe ``name`` on ``n_jobs`` threads (``fit_probe``); returns it and the number of
    ConvergenceWarnings raised while fitting."""
    probe = PROBES.build(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_probe(probe, X, y, n_jobs)
    n_conv = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # re-emit the others, except sklearn's note on CV folds missing a predicted site
        if not issubclass(w.category, ConvergenceWarning) and "classes not in y_true" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return probe, n_conv


def _best_params(probe: Any) -> dict[str, Any]:
    return {k.split("__")[-1]: v for k, v in getattr(probe, "best_params_", {}).items()}


def score_fold(
    X: np.ndarray,
    meta: pd.DataFrame,
    fold: Fold,
    age_probe: str = CHALLENGE_PROBES["age"],
    site_probe: str = CHALLENGE_PROBES["site"],
    n_jobs: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit the probes on ``fold.train`` and score the fold.

    Args:
        X: (N, F) features, rows aligned with ``meta`` (columns ``age``, ``site``, ``participant_id``).
        fold: row indices of train / internal_test / external_test.
        n_jobs: threads per grid search (``medssl.eval.probes.probe_jobs``; None = every CPU); the
            metrics do not depend on it.

    Returns:
        ``metrics`` (see module docstring; ``mae_external`` and ``challenge_score`` are None without an
        external test) and ``predictions``: one row per scored row with ``split``, ``site``, ``age``,
        ``age_pred`` and ``site_pred`` (internal test only, else -1).
    """
    if len(fold.train) < 10 or len(fold.internal_test) == 0:
        raise DataError(
            f"fold {fold.name}: {len(fold.train)} train / {len(fold.internal_test)} internal-test rows; "
            "the probes need >= 10 train rows (5-fold grid search) and a non-empty internal test"
        )
    age = meta["age"].to_numpy(dtype=np.float64)
    site = meta["site"].to_numpy()
    largest = int(np.unique(site[fold.train], return_counts=True)[1].max())
    if largest < 5:
        raise DataError(
            f"fold {fold.name}: no training site has 5 scans (at most {largest}); the site probe's 5-fold "
            "grid search (the challenge's) needs them: use a larger cohort or fewer sites"
        )
    rows = np.concatenate([fold.train, fold.internal_test, fold.external_test])
    if not np.isfinite(age[rows]).all():
        raise DataError(f"fold {fold.name}: some rows have no age; the age probe needs every label")
    age_est, _ = _fit(age_probe, X[fold.train], age[fold.train], n_jobs)
    site_est, site_warnings = _fit(site_probe, X[fold.train], site[fold.train], n_jobs)

    pred = pd.DataFrame(
        {
            "row": rows,
            "split": np.repeat([TRAIN, INTERNAL, EXTERNAL], [len(fold.train), len(fold.internal_test),
                                                              len(fold.external_test)]),
            "participant_id": meta["participant_id"].to_numpy()[rows],
            "site": site[rows],
            "age": age[rows],
            "age_pred": age_est.predict(X[rows]),
        }
    )
    pred["site_pred"] = -1
    is_int = (pred.split == INTERNAL).to_numpy()
    pred.loc[is_int, "site_pred"] = site_est.predict(X[fold.internal_test])
    part = {name: pred[pred.split == name] for name in (TRAIN, INTERNAL, EXTERNAL)}

    n_train_sites = int(len(np.unique(site[fold.train])))
    bacc = M.balanced_accuracy(part[INTERNAL].site, part[INTERNAL].site_pred)
    has_ext = len(fold.external_test) > 0
    mae_ext = M.mae(part[EXTERNAL].age, part[EXTERNAL].age_pred) if has_ext else None
    metrics = {
        "fold": fold.name,
        "mae_internal": M.mae(part[INTERNAL].age, part[INTERNAL].age_pred),
        "rmse_internal": M.rmse(part[INTERNAL].age, part[INTERNAL].age_pred),
        "mae_external": mae_ext,
        "rmse_external": M.rmse(part[EXTERNAL].age, part[EXTERNAL].age_pred) if has_ext else None,
        "mae_train": M.mae(part[TRAIN].age, part[TRAIN].age_pred),
        "bacc_site": bacc,
        "site_chance": 1.0 / n_train_sites,  # this cohort's training sites (the lecture quotes 1/64 for OpenBHB)
        "challenge_score": M.challenge_score(mae_ext, bacc) if has_ext else None,
        "challenge_score_version": M.CHALLENGE_SCORE_VERSION,
        "n_train": len(fold.train),
        "n_internal": len(fold.internal_test),
        "n_external": len(fold.external_test),
        "n_excluded": len(fold.excluded),
        "n_train_sites": n_train_sites,
        "n_external_sites": int(len(np.unique(site[fold.external_test]))),
        "age_probe": age_probe,
        "site_probe": site_probe,
        "age_probe_params": _best_params(age_est),
        "site_probe_params": _best_params(site_est),
        "site_probe_convergence_warnings": site_warnings,
    }
    return metrics, pred


def per_site_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Per (split, site): ``n``, ``mae`` and its standard error ``mae_se = std(|err|, ddof=1) / sqrt(n)``."""
    err = (pred.age_pred - pred.age).abs()
    g = err.groupby([pred.split, pred.site])
    table = pd.DataFrame({"n": g.size(), "mae": g.mean(), "mae_se": g.std(ddof=1) / np.sqrt(g.size())})
    return table.reset_index().rename(columns={"level_0": "split", "level_1": "site"})


def average_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric metric over folds, plus ``<key>_std`` (ddof 0) when there are several folds."""
    if len(per_fold) == 1:
        return dict(per_fold[0])
    out: dict[str, Any] = {"fold": f"mean of {len(per_fold)} folds"}
    for key, value in per_fold[0].items():
        values = [m[key] for m in per_fold]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and None not in values:
            out[key] = float(np.mean(values))
            out[f"{key}_std"] = float(np.std(values))
        elif key != "fold" and all(v == value for v in values):
            out[key] = value
    return out
