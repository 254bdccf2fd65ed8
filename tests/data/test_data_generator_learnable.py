"""The synthetic cohort is learnable: linear probes on per-image z-scored voxels find age, site and
diagnosis well above their no-image references (figures for the demo size in docs/data.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.data import CohortDataset, make_synthetic_cohort, open_cohort
from medssl.data.synthetic.design import design_cohort
from medssl.eval.probes import GRID


def _zscored(root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """``(N, V)`` vbm voxels after the dataset's per-image z-score, and the participants table."""
    cohort = open_cohort(root, "vbm")
    data = CohortDataset(cohort, normalize="zscore")
    return np.stack([data[i]["image"].ravel() for i in range(len(data))]), cohort.table


def _splits(table: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple((table["split"] == s).to_numpy() for s in ("train", "internal_test", "external_test"))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, pd.DataFrame]:
    """The demo design (160 subjects, 6 training + 2 external sites) on a coarser 24x30x24 grid."""
    root = make_synthetic_cohort(tmp_path_factory.mktemp("healthy") / "c", n_subjects=160, n_sites=6,
                                 n_external_sites=2, shape=(24, 30, 24), seed=0)  # fmt: skip
    return _zscored(root)


def test_age_is_learnable_beyond_constant_and_site_mean(healthy: tuple[np.ndarray, pd.DataFrame]) -> None:
    """Ridge (the OpenBHB probe's alpha grid) beats the train-mean and the site-mean predictors."""
    x, t = healthy
    tr, it, et = _splits(t)
    age = t["age"].to_numpy()
    ridge = GridSearchCV(Ridge(), {"alpha": list(GRID)}, cv=5, scoring="r2").fit(x[tr], age[tr])
    mae = mean_absolute_error(age[it], ridge.predict(x[it]))
    constant = np.abs(age[it] - age[tr].mean()).mean()
    site_mean = np.abs(age[it] - t.loc[it, "site"].map(t[tr].groupby("site")["age"].mean())).mean()
    assert mae <= 0.5 * constant  # measured 4.6 vs 16.2
    assert mae <= 0.8 * site_mean  # measured 4.6 vs 8.8
    assert mean_absolute_error(age[et], ridge.predict(x[et])) <= 0.6 * np.abs(age[et] - age[tr].mean()).mean()


def test_site_is_decodable_from_zscored_vbm(healthy: tuple[np.ndarray, pd.DataFrame]) -> None:
    x, t = healthy
    tr, it, _ = _splits(t)
    site = t["site_code"].to_numpy()
    probe = make_pipeline(StandardScaler(), PCA(), LogisticRegression(C=1e-2, max_iter=2000)).fit(x[tr], site[tr])
    assert balanced_accuracy_score(site[it], probe.predict(x[it])) >= 3 / 6  # 3x chance; measured 0.77


@pytest.mark.parametrize("cohort", ["healthy", "scz", "asd"])
def test_external_ages_lie_inside_the_training_range(cohort: str) -> None:
    for seed in range(20):
        t = design_cohort(cohort, 160, 6, 2, np.random.default_rng([seed, 0]))
        train, external = (t.loc[t["split"] == s, "age"] for s in ("train", "external_test"))
        assert train.min() <= external.min() and external.max() <= train.max()
        assert t.groupby("site")["age"].mean().std() > 5.0  # sites recruit different age bands


@pytest.fixture(scope="module")
def clinical_auc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[float, float]]:
    """Logistic probe (C=1e-3 on standardised principal components) of case vs control per cohort:
    ``{cohort: (internal AUC, held-out AUC)}``; scz at ``synthetic:scz``'s default size, bd and asd
    on a 24x30x24 grid."""
    out = {}
    for cohort, shape in (("scz", (32, 40, 32)), ("bd", (24, 30, 24)), ("asd", (24, 30, 24))):
        root = make_synthetic_cohort(tmp_path_factory.mktemp(cohort) / "c", cohort=cohort, n_subjects=96,
                                     n_sites=6, n_external_sites=2, shape=shape, seed=0)  # fmt: skip
        x, t = _zscored(root)
        tr, it, _ = _splits(t)
        y = (t["diagnosis"] != "control").to_numpy()
        assert (t.groupby("site")["diagnosis"].nunique() == 2).all()  # cases and controls at every site
        probe = make_pipeline(StandardScaler(), PCA(), LogisticRegression(C=1e-3, max_iter=2000)).fit(x[tr], y[tr])
        score = probe.decision_function(x)
        out[cohort] = (roc_auc_score(y[it], score[it]), roc_auc_score(y[~tr], score[~tr]))
    return out


def test_diagnosis_is_learnable_scz_strongest(clinical_auc: dict[str, tuple[float, float]]) -> None:
    """Measured (internal, held-out): scz (0.87, 0.86), bd (0.81, 0.85), asd (0.71, 0.73)."""
    assert clinical_auc["scz"][0] >= 0.78
    assert clinical_auc["bd"][1] >= 0.65 and clinical_auc["asd"][1] >= 0.57
    assert clinical_auc["scz"][1] > clinical_auc["bd"][1] > clinical_auc["asd"][1]
