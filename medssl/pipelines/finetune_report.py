"""Scores of fine-tuned classifiers, their summary over repeats, and the figures of ``medssl finetune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

from medssl.eval.metrics import balanced_accuracy, roc_auc
from medssl.utils.io import atomic_path


def disease_score(proba: np.ndarray) -> np.ndarray:
    """Score of "not control" from class probabilities (N, K), control = class 0: ``1 - p_0``.

    For K = 2 this is ``p_1``, the positive-class probability.
    """
    return 1.0 - np.asarray(proba)[:, 0]


def score_predictions(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC (binary, or one-vs-rest macro for K > 2) and balanced accuracy of ``argmax`` predictions.

    Args:
        y: (N,) integer labels in [0, K).
        proba: (N, K) class probabilities (rows sum to 1).
    """
    proba = np.asarray(proba)
    auc = roc_auc(y, proba[:, 1] if proba.shape[1] == 2 else proba)
    return {"auc": auc, "bacc": balanced_accuracy(y, proba.argmax(axis=1))}


def summarize(values: Sequence[float], confidence: float = 0.95,
              bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and a Student-t confidence interval of the mean over repeats.

    ``ci95 = mean -/+ t_{(1+c)/2, n-1} * std / sqrt(n)``, clipped to the score's range ``bounds``;
    ``std = 0`` and ``ci95 = None`` when n = 1.
    """
    v = np.asarray(values, dtype=float)
    n, mean = len(v), float(v.mean())
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci95": None, "n": n, "values": v.tolist()}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n))
    ci = [max(bounds[0], mean - half), min(bounds[1], mean + half)]
    return {"mean": mean, "std": std, "ci95": ci, "n": n, "values": v.tolist()}


SCORE_PREFIXES = ("auc", "bacc", "val_auc")  # scores in [0, 1]; not the chosen C, epochs, ...


def summarize_runs(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Summary (see :func:`summarize`) of every score key (``auc*``, ``bacc*``, ``val_auc``) of the
    per-repeat dicts; hyper-parameters picked per run (the linear recipe's ``C``) stay in ``runs``."""
    keys = [k for k in runs[0] if k.startswith(SCORE_PREFIXES) and isinstance(runs[0][k], float)]
    return {k: summarize([r[k] for r in runs]) for k in keys}


def _figure(ncols: int) -> tuple[Any, Any]:
    matplotlib.use("Agg")  # here, not at import: importing medssl leaves a notebook's backend alone
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4.5), squeeze=False)
    return fig, axes[0]


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(curves: dict[str, dict[str, list[tuple[str, np.ndarray, np.ndarray]]]], path: Path) -> None:
    """ROC curves of each initialisation, one panel per test set, one labelled line per repeat.

    Args:
        curves: ``{init: {test_set: [(repeat label, y (N,), score (N,)), ...]}}``; the score is
            :func:`disease_score` (positive class vs control). Each line's legend entry reads
            ``init, repeat label: AUC``; repeats of one init share its colour, with distinct dashes.
    """
    present = {s for per_init in curves.values() for s in per_init}
    sets = [s for s in ("internal_test", "external_test") if s in present]
    fig, axes = _figure(len(sets))
    styles = ["-", "--", ":", "-."]
    for ax, name in zip(axes, sets):
        for i, (init, per_set) in enumerate(curves.items()):
            for k, (repeat, y, score) in enumerate(per_set.get(name, [])):
                fpr, tpr, _ = roc_curve(y > 0, score)
                ax.plot(fpr, tpr, color=f"C{i}", ls=styles[k % len(styles)], alpha=0.8, lw=1.2,
                        label=f"{init}, {repeat}: AUC {roc_auc(y > 0, score):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance (AUC 0.5)")
        ax.set(title=name.replace("_", " "), xlabel="false positive rate", ylabel="true positive rate",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=7)
    _save(fig, path)


def plot_label_fraction(rows: list[dict[str, Any]], path: Path) -> None:
    """AUC (mean +/- std over repeats) against the number of labelled subjects, one line per init.

    Args:
        rows: ``{"init", "n_train", "auc_internal": {"mean", "std"}, "auc_external": {...}}`` dicts.
    """
    sets = [k for k in ("auc_internal", "auc_external") if any(k in r for r in rows)]
    fig, axes = _figure(len(sets))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    for ax, key in zip(axes, sets):
        for i, init in enumerate(inits):
            mine = sorted((r for r in rows if r["init"] == init and key in r), key=lambda r: r["n_train"])
            ax.errorbar([r["n_train"] for r in mine], [r[key]["mean"] for r in mine],
                        yerr=[r[key]["std"] for r in mine], marker="o", capsize=3, color=f"C{i}",
                        label=init)
        ax.set(title=key.replace("auc_", "").replace("_", " ") + " test",
               xlabel="labelled training subjects", ylabel="ROC AUC")
        ax.legend(fontsize=8)
    _save(fig, path)


def _cell(summary: dict[str, Any] | None) -> str:
    """``0.712 [0.650, 0.774]`` (mean and 95 % CI over repeats), ``0.712`` for one repeat."""
    if not summary:
        return "–"
    ci = summary.get("ci95")
    return f"{summary['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def finetune_report(metrics: dict[str, Any], command: str | None) -> str:
    """``report.md`` of ``medssl finetune``: the command, the settings, one row per (init, labelled
    size) with mean AUC / BAcc and their 95 % CIs over repeats, the leakage checks and the figures."""
    positive, control = ", ".join(metrics["positive"]), metrics["control"]
    lines = [f"# Fine-tuning: {positive} vs {control}", "",
             f"Command: `{command}`" if command else
             "Run from Python (`medssl.pipelines.finetune.finetune`); the settings are in `config.yaml`.",
             "", f"Recipe `{metrics['recipe']}`, {metrics['repeats']} repeat(s) per fold, ensemble of "
             f"{metrics['ensemble']}; label counts {metrics['label_counts']}. Scores: mean over repeats, "
             "[95 % CI of the mean, Student t] (none for one repeat).", "",
             "| init | labelled | AUC internal | AUC external | BAcc internal | BAcc external | runs |",
             "|---|---|---|---|---|---|---|"]
    for r in metrics["results"]:
        n = r["n_labelled"] if r["n_labelled"] is not None else f"all ({r['n_train']})"
        lines.append(f"| {r['init']} | {n} | {_cell(r.get('auc_internal'))} | {_cell(r.get('auc_external'))} | "
                     f"{_cell(r.get('bacc_internal'))} | {_cell(r.get('bacc_external'))} | {len(r['runs'])} |")
    checks = metrics["leakage"]["checks"]
    lines += ["", f"Leakage guard (`finetune.leakage={metrics['leakage']['mode']}`): "
              + "; ".join(f"{c['init']}: " + ("overlap " + "; ".join(c["overlap"]) if c.get("overlap")
                                             else "no overlap" if c.get("checked") else f"not checked ({c['reason']})")
                          for c in checks), ""]
    lines += [f"![{name}]({file})" for name, file in metrics["figures"].items()]
    lines += ["", "Files: `metrics.json` (every run), `predictions.csv` (every test prediction), `config.yaml` "
              "(resolved settings).", ""]
    return "\n".join(lines)
