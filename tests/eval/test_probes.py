"""Challenge probes on planted features reach the MAE / BAcc their construction implies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import medssl.eval  # noqa: F401  (registers the probes)
from medssl.eval.cv import Fold
from medssl.eval.protocol import average_folds, per_site_table, score_fold
from medssl.registry import PROBES


def _cohort(n_sites: int, per_site: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_sites * per_site
    return pd.DataFrame(
        {
            "participant_id": [f"p{i}" for i in range(n)],
            "site": np.repeat(np.arange(n_sites), per_site),
            "age": rng.normal(40.0, 12.0, n),
        }
    )


def _fold(meta: pd.DataFrame, external_sites: list[int], seed: int) -> Fold:
    rng = np.random.default_rng(seed)
    ext = np.flatnonzero(meta.site.isin(external_sites))
    rest = rng.permutation(np.flatnonzero(~meta.site.isin(external_sites)))
    cut = int(0.6 * len(rest))
    return Fold("planted", np.sort(rest[:cut]), np.sort(rest[cut:]), ext)


def test_probes_are_the_ramp_estimators() -> None:
    age, site = PROBES.build("openbhb_age"), PROBES.build("openbhb_site")
    assert isinstance(age.estimator, Ridge) and age.scoring == "r2" and age.cv == 5
    assert age.param_grid == {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}
    assert isinstance(site.estimator, LogisticRegression) and site.scoring == "balanced_accuracy"
    assert site.estimator.solver == "saga" and site.estimator.max_iter == 150
    assert site.param_grid == {"C": [0.01, 0.1, 1.0, 10.0, 100.0]} and site.cv == 5


def test_age_plus_noise_gives_noise_level_mae() -> None:
    meta = _cohort(n_sites=4, per_site=250, seed=0)
    s, rng = 2.0, np.random.default_rng(1)
    X = np.c_[meta.age + rng.normal(0, s, len(meta)), rng.normal(size=(len(meta), 3))]
    metrics, _ = score_fold(X, meta, _fold(meta, [3], seed=2))
    # least squares on x = age + e shrinks by k = var(age) / (var(age) + s^2): err = (k - 1)(age - m) + k e
    k = 12.0**2 / (12.0**2 + s**2)
    expected = np.sqrt((1 - k) ** 2 * 12.0**2 + k**2 * s**2) * np.sqrt(2 / np.pi)
    assert metrics["mae_internal"] == pytest.approx(expected, rel=0.1)
    assert metrics["mae_external"] == pytest.approx(expected, rel=0.1)
    assert metrics["rmse_internal"] == pytest.approx(expected * np.sqrt(np.pi / 2), rel=0.1)
    assert metrics["site_chance"] == pytest.approx(1 / 3)
    assert metrics["bacc_site"] < 0.5  # features carry no site information
    assert metrics["challenge_score"] == pytest.approx(metrics["mae_external"] * metrics["bacc_site"] ** 0.3)
    assert (metrics["n_train"], metrics["n_internal"], metrics["n_external"]) == (450, 300, 250)


def test_pure_site_features_give_perfect_bacc_and_chance_level_mae() -> None:
    meta = _cohort(n_sites=5, per_site=60, seed=3)
    rng = np.random.default_rng(4)
    X = np.eye(5)[meta.site] * 3.0 + rng.normal(0, 0.05, (len(meta), 5))
    metrics, pred = score_fold(X, meta, _fold(meta, [], seed=5))
    assert metrics["bacc_site"] > 0.97
    # ages are independent of site: the best prediction is the mean, MAE = sd * sqrt(2 / pi)
    assert metrics["mae_internal"] == pytest.approx(12.0 * np.sqrt(2 / np.pi), rel=0.15)
    assert metrics["mae_external"] is None and metrics["challenge_score"] is None
    assert (pred.site_pred[pred.split != "internal_test"] == -1).all()


def test_per_site_table_and_fold_average_match_direct_computation() -> None:
    pred = pd.DataFrame(
        {"split": ["internal_test"] * 4 + ["external_test"] * 2, "site": [0, 0, 1, 1, 2, 2],
         "age": [10.0, 20, 30, 40, 50, 60], "age_pred": [11.0, 23, 30, 44, 50, 61]}
    )
    table = per_site_table(pred).set_index("site")
    assert table.loc[0, "mae"] == pytest.approx(2.0) and table.loc[0, "n"] == 2
    assert table.loc[1, "mae_se"] == pytest.approx(np.std([0, 4], ddof=1) / np.sqrt(2))
    avg = average_folds([{"fold": "a", "mae": 1.0, "probe": "x"}, {"fold": "b", "mae": 3.0, "probe": "x"}])
    assert avg["mae"] == 2.0 and avg["mae_std"] == 1.0 and avg["probe"] == "x"


def test_fit_and_score_probes_monitor_matches_score_fold() -> None:
    from medssl.eval.probes import fit_and_score_probes

    meta = _cohort(n_sites=3, per_site=80, seed=6)
    rng = np.random.default_rng(7)
    X = np.c_[meta.age + rng.normal(0, 2.0, len(meta)), np.eye(3)[meta.site]]
    fold = _fold(meta, [], seed=8)
    full, _ = score_fold(X, meta, fold)
    quick = fit_and_score_probes(X[fold.train], meta.iloc[fold.train], X[fold.internal_test],
                                 meta.iloc[fold.internal_test])
    assert quick["probe_mae_age"] == pytest.approx(full["mae_internal"])
    assert quick["probe_bacc_site"] == pytest.approx(full["bacc_site"])
    assert quick["probe_site_chance"] == pytest.approx(1 / 3)


def _unconverged_site_features(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Badly scaled features on which saga stops at max_iter: its result depends on its sample order."""
    meta = _cohort(n_sites=4, per_site=40, seed=seed)
    rng = np.random.default_rng(seed)
    X = np.c_[meta.age, np.eye(4)[meta.site] + rng.normal(0, 1.0, (len(meta), 4)),
              rng.normal(0, 30.0, (len(meta), 6))]
    return X, meta


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # on purpose, see below
def test_parallel_grid_search_gives_the_serial_metrics() -> None:
    """Threads change nothing: same metrics, same chosen C and alpha, same ConvergenceWarning count."""
    from medssl.eval.probes import probe_jobs

    X, meta = _unconverged_site_features()
    fold = _fold(meta, [3], seed=1)
    seeds = [LogisticRegression(solver="saga", max_iter=150, C=1.0, random_state=s).fit(X, meta.site).coef_
             for s in (1, 2)]
    assert not np.array_equal(*seeds)  # the seed matters here, so a thread drawing another would show
    serial, pred_serial = score_fold(X, meta, fold, n_jobs=1)
    parallel, pred_parallel = score_fold(X, meta, fold, n_jobs=2)
    assert serial["site_probe_convergence_warnings"] > 0
    assert serial == parallel
    pd.testing.assert_frame_equal(pred_serial, pred_parallel)
    assert probe_jobs(1) == 1 and probe_jobs(3) == 3 and probe_jobs(None) == probe_jobs(-1) >= 1


def test_probe_jobs_refuses_zero() -> None:
    from medssl.errors import ConfigError
    from medssl.eval.probes import probe_jobs

    with pytest.raises(ConfigError, match="n_jobs=0"):
        probe_jobs(0)


def test_a_fold_whose_sites_are_too_small_for_the_site_probe_is_one_clear_error() -> None:
    """12 sites x 3 training scans: sklearn's 5-fold split of the site probe raised a ValueError."""
    from medssl.errors import DataError

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"age": rng.uniform(20, 80, 48), "site": np.repeat(np.arange(12), 4),
                         "participant_id": [str(i) for i in range(48)]})
    fold = Fold("fixed", train=np.arange(48)[np.arange(48) % 4 != 3], internal_test=np.arange(3, 48, 4),
                external_test=np.array([], dtype=int))
    with pytest.raises(DataError, match="no training site has 5 scans"):
        score_fold(rng.normal(size=(48, 4)), meta, fold)
