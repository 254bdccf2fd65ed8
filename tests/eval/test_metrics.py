"""Scores against the published leaderboard and against direct loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medssl.eval import metrics as M


@pytest.mark.parametrize(
    ("mae_ext", "bacc", "expected", "digits"),
    [(3.564, 0.052, 1.468, 3), (3.761, 0.051, 1.540, 3), (7.13, 0.080, 3.34, 2), (4.18, 0.067, 1.86, 2)],
)
def test_challenge_score_reproduces_leaderboard_rows(mae_ext: float, bacc: float, expected: float, digits: int) -> None:
    # leaderboard rows 1 and 4, and the organisers' VBM DenseNet / ResNet baselines (reported to 2 digits)
    assert round(M.challenge_score(mae_ext, bacc), digits) == pytest.approx(expected, abs=1e-9)


def test_challenge_score_rejects_percentages() -> None:
    with pytest.raises(ValueError, match="fraction"):
        M.challenge_score(3.5, 5.2)
    assert "0.3" in M.CHALLENGE_SCORE_VERSION


def test_regression_and_classification_scores_match_loops() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=50), rng.normal(size=50)
    assert M.mae(y, p) == pytest.approx(sum(abs(a - b) for a, b in zip(y, p)) / 50)
    assert M.rmse(y, p) == pytest.approx((sum((a - b) ** 2 for a, b in zip(y, p)) / 50) ** 0.5)
    t = np.array([0, 0, 0, 0, 1, 1, 2])
    q = np.array([0, 0, 0, 1, 1, 0, 2])
    assert M.balanced_accuracy(t, q) == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    s = rng.normal(size=20)
    b = (rng.random(20) > 0.5).astype(int)
    pairs = [(i, j) for i, j in itertools.product(range(20), range(20)) if b[i] == 1 and b[j] == 0]
    auc = sum((s[i] > s[j]) + 0.5 * (s[i] == s[j]) for i, j in pairs) / len(pairs)
    assert M.roc_auc(b, s) == pytest.approx(auc)


def test_alignment_and_uniformity_match_pair_loops() -> None:
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
    n1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    n2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    assert M.alignment(z1, z2) == pytest.approx(np.mean([np.sum((a - b) ** 2) for a, b in zip(n1, n2)]))
    pair_terms = [np.exp(-2 * np.sum((n1[i] - n1[j]) ** 2)) for i in range(12) for j in range(i + 1, 12)]
    assert M.uniformity(z1) == pytest.approx(np.log(np.mean(pair_terms)))
    assert M.alignment(z1, 3 * z1) == pytest.approx(0.0, abs=1e-12)  # scale-invariant: normalised first
    # a collapsed representation has the worst uniformity, 0
    assert M.uniformity(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-12)
