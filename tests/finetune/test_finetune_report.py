"""Scores and summaries: AUC against sklearn and a pairwise count, the t confidence interval, figures."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medssl.pipelines.finetune_report import plot_label_fraction, plot_roc, score_predictions, summarize


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2 (Mann-Whitney U / n_pos n_neg)."""
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_binary_auc_and_bacc() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, 60), 0, 1).round(1)  # ties on purpose
    scores = score_predictions(y, np.stack([1 - p1, p1], axis=1))
    assert scores["auc"] == pytest.approx(roc_auc_score(y, p1))
    assert scores["auc"] == pytest.approx(_pairwise_auc(y, p1))
    pred = (p1 > 0.5).astype(int)
    recalls = [np.mean(pred[y == k] == k) for k in (0, 1)]
    assert scores["bacc"] == pytest.approx(np.mean(recalls))


def test_multiclass_auc_is_one_vs_rest_macro() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 10)
    proba = rng.dirichlet(np.ones(3), size=30)
    expected = np.mean([_pairwise_auc((y == k).astype(int), proba[:, k]) for k in range(3)])
    assert score_predictions(y, proba)["auc"] == pytest.approx(expected)


def test_summary_mean_std_and_t_interval() -> None:
    s = summarize([0.70, 0.80, 0.75])
    assert s["mean"] == pytest.approx(0.75)
    assert s["std"] == pytest.approx(0.05)  # sample std, ddof=1
    half = 4.302652729911275 * 0.05 / np.sqrt(3)  # t_{0.975, 2}
    assert s["ci95"] == pytest.approx([0.75 - half, 0.75 + half])
    assert summarize([0.9, 1.0, 0.95])["ci95"][1] == 1.0  # clipped to the AUC range
    one = summarize([0.6])
    assert one["std"] == 0.0 and one["ci95"] is None and one["n"] == 1


def test_figures_are_written(tmp_path) -> None:
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 10)
    curves = {"scratch": {"internal_test": [("seed 0", y, rng.random(20))] * 2,
                          "external_test": [("seed 0", y, rng.random(20))]}}
    plot_roc(curves, tmp_path / "roc.png")
    rows = [{"init": i, "n_train": n, "auc_internal": {"mean": 0.6, "std": 0.1},
             "auc_external": {"mean": 0.55, "std": 0.1}} for i in ("a", "b") for n in (10, 20)]
    plot_label_fraction(rows, tmp_path / "lf.png")
    for name in ("roc.png", "lf.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_summary_covers_scores_not_the_chosen_hyper_parameters() -> None:
    from medssl.pipelines.finetune_report import summarize_runs

    runs = [{"auc_internal": 0.7, "val_auc": 0.8, "C": 10.0, "best_epoch": 3},
            {"auc_internal": 0.9, "val_auc": 0.6, "C": 0.1, "best_epoch": 5}]
    summary = summarize_runs(runs)
    assert set(summary) == {"auc_internal", "val_auc"}  # C = 10 would get a CI clipped to [0, 1]
    assert summary["auc_internal"]["mean"] == pytest.approx(0.8)


def test_every_roc_curve_has_its_own_legend_entry_with_its_auc(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl.pipelines.finetune_report as report

    drawn = []
    monkeypatch.setattr(report, "_save", lambda fig, path: drawn.append(fig))
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 15)
    scores = {(init, k): np.clip(y * 0.3 * (k + 1) + rng.random(30), 0, None) for init in ("scratch", "yaware")
              for k in range(3)}
    curves = {init: {"internal_test": [(f"seed {k}", y, scores[init, k]) for k in range(3)]}
              for init in ("scratch", "yaware")}
    report.plot_roc(curves, tmp_path / "roc.png")
    (ax,) = drawn[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    expected = [f"{init}, seed {k}: AUC {roc_auc_score(y, scores[init, k]):.3f}" for init in ("scratch", "yaware")
                for k in range(3)]
    assert labels == expected + ["chance (AUC 0.5)"]
    assert len(ax.get_lines()) == 7  # six curves and the diagonal, each in the legend
