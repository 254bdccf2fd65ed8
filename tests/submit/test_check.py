"""The local RAMP harness: server calls, rejections, probes and the four scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error

from medssl.cli import main
from medssl.errors import DataError
from medssl.submit.check import check_submission, probe_scores

IGNORES_INDICES = '''
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import make_pipeline


class Mean(BaseEstimator):
    def __init__(self, indices=None):
        self.indices = indices

    def fit(self, X=None, y=None):
        self.fitted_ = True  # recent scikit-learn refuses Pipeline.predict without a fitted attribute
        return self

    def predict(self, X):
        return np.asarray(X[:, :4], dtype=np.float64)


def get_estimator():
    return make_pipeline(Mean())
'''


def test_scores_of_the_exported_tiny_encoder(tiny_submission: Path, kit_root: Path) -> None:
    lines: list[str] = []
    scores = check_submission(tiny_submission, kit_root, log=lines.append)
    assert set(scores) >= {"mae_age", "bacc_site", "ext_mae_age", "challenge_metric"}
    assert 0 <= scores["bacc_site"] <= 1 and scores["mae_age"] > 0 and scores["ext_mae_age"] > 0
    assert scores["challenge_metric"] == pytest.approx(scores["ext_mae_age"] * scores["bacc_site"] ** 0.3)
    assert any("sanitizer: ok" in line for line in lines)


def test_probe_scores_against_a_direct_computation() -> None:
    """Planted signal: feature 0 is the age, feature 1 the site; external rows have no site."""
    rng = np.random.default_rng(0)
    n = 60
    y_train = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": np.tile([0, 1, 2], n // 3)})
    y_test = pd.DataFrame({
        "age": rng.uniform(10, 80, 12), "site": [0, 1, 2] * 2 + [np.nan] * 6,
        "split": ["internal_test"] * 6 + ["external_test"] * 6,
    })

    def feats(y: pd.DataFrame) -> np.ndarray:
        onehot = np.eye(3)[y["site"].fillna(0).to_numpy(int)]
        return np.c_[y["age"] / 10, 3 * onehot, rng.normal(0, 0.01, len(y))]

    F_train, F_test = feats(y_train), feats(y_test)
    scores = probe_scores(F_train, y_train, F_test, y_test)
    age = Ridge(alpha=0.01).fit(F_train, y_train["age"]).predict(F_test)
    assert scores["mae_age"] == pytest.approx(mean_absolute_error(y_test["age"][:6], age[:6]), rel=0.05)
    assert scores["ext_mae_age"] == pytest.approx(mean_absolute_error(y_test["age"][6:], age[6:]), rel=0.05)
    assert scores["mae_age"] < 0.5
    assert scores["bacc_site"] == balanced_accuracy_score([0, 1, 2] * 2, [0, 1, 2] * 2) == 1.0
    assert scores["challenge_metric"] == pytest.approx(scores["ext_mae_age"])


def test_rejects_a_sanitizer_violation_with_its_line(tiny_submission: Path, kit_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_submission, bad)
    source = (bad / "estimator.py").read_text()
    (bad / "estimator.py").write_text(source + "# weights are never read with an open call\n")
    line = source.count("\n") + 1
    with pytest.raises(DataError, match=rf"line {line}: 'open'"):
        check_submission(bad, kit_root)


def test_rejects_an_estimator_that_ignores_indices(kit_root: Path, tmp_path: Path) -> None:
    (tmp_path / "estimator.py").write_text(IGNORES_INDICES)
    with pytest.raises(DataError, match="`indices` ignored"):
        check_submission(tmp_path, kit_root)


def test_cli_export_then_check(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "submissions" / "tiny"
    assert main(["export-openbhb", str(tiny_run), "--out", str(out), "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "ramp-test --submission tiny --quick-test" in printed and "medssl check-submission" in printed
    assert main(["export-openbhb", str(tiny_run), "--out", str(out)]) == 2  # refuses to overwrite
    assert main(["check-submission", str(out)]) == 0  # no --data: medssl's synthetic kit, in a temporary folder
    printed = capsys.readouterr().out
    assert "synthetic kit" in printed
    assert all(key in printed for key in ("mae_age", "bacc_site", "ext_mae_age", "challenge_metric"))
