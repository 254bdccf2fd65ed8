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


RAISES_IN_FIT = IGNORES_INDICES.replace("        self.fitted_ = True",
                                        "        raise TypeError('no weights_only here')")


def test_cli_export_then_check(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Default check: a stand-in of the real kit (full-width rows, real mask sizes); last line PASS, exit 0."""
    out = tmp_path / "submissions" / "tiny"
    assert main(["export-openbhb", str(tiny_run), "--out", str(out), "--batch-size", "4", "--allow-grid-mismatch"]) == 0
    printed = capsys.readouterr().out
    assert "ramp-test --submission tiny --quick-test" in printed and "medssl check-submission" in printed
    assert main(["export-openbhb", str(tiny_run), "--out", str(out), "--allow-grid-mismatch"]) == 2  # exists
    assert main(["check-submission", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "stand-in" in lines[0] and any("rows of 3659572 columns" in line for line in lines)
    keys = ("mae_age", "bacc_site", "ext_mae_age", "challenge_metric")
    assert all(any(key in line for line in lines) for key in keys)
    assert lines[-1].startswith("PASS: ")


@pytest.mark.parametrize("source,reason", [
    (IGNORES_INDICES, "`indices` ignored"),
    (RAISES_IN_FIT, "get_estimator().fit(None, None) raised TypeError: no weights_only here"),
    (IGNORES_INDICES + "# an open call\n", "'open'"),
])
def test_cli_check_ends_with_fail(source: str, reason: str, kit_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "estimator.py").write_text(source)
    assert main(["check-submission", str(tmp_path), "--data", str(kit_root)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: ") and reason in last
    if source is RAISES_IN_FIT:
        line = next(i for i, text in enumerate(source.splitlines(), 1) if "raise TypeError" in text)
        assert f"estimator.py, line {line})" in last


def test_cli_check_passes_on_a_kit_folder(tiny_submission: Path, kit_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-submission", str(tiny_submission), "--data", str(kit_root)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("PASS: ")
    assert main(["check-submission", str(tiny_submission), "--data", str(kit_root / "data")]) == 2  # not a kit


def test_standin_kit_has_the_kit_widths(tmp_path: Path) -> None:
    """The default stand-in: 3,659,572-column rows; masks of 519,945 (vbm, 4-D TPM > 0.05) and 1,827,095 voxels."""
    import nibabel

    from medssl.data.kit_writer import write_standin_kit
    from medssl.submit.check import read_kit

    kit = read_kit(write_standin_kit(tmp_path / "kit", n_train=10, n_internal=2, n_external=1))
    assert kit.X_train.shape == (10, 3659572) and kit.X_test.shape == (3, 3659572)
    assert kit.X_train.dtype == np.float32 and 0 <= kit.X_test[2].min() and kit.X_test[2].max() < 1
    tpm = nibabel.load(kit.masks["VBM_MASK"]).get_fdata()
    assert tpm.shape == (121, 145, 121, 1) and int((tpm > 0.05).sum()) == 519945
    brain = nibabel.load(kit.masks["QUASIRAW_MASK"]).get_fdata()
    assert brain.shape == (182, 218, 182) and int((brain > 0).sum()) == 1827095
    assert list(kit.y_test["split"]) == ["internal_test", "internal_test", "external_test"]
    assert list(kit.y_train["split"].unique()) == ["internal_train"] and sorted(kit.y_train["site"].unique()) == [0, 1]
