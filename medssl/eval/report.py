"""Site-effect report: figures plus ``report.md`` that explains every number in one page.

``write_report(folder, metrics, predictions, per_site, X, meta, site_names, baselines)`` writes
``site_bacc.png``, ``per_site_mae.png``, ``age_scatter.png``, ``embedding.png`` and ``report.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from medssl.eval import figures
from medssl.eval.cv import EXTERNAL, INTERNAL, TRAIN

SUMMARY_KEYS = ("mae_internal", "rmse_internal", "mae_external", "bacc_site", "site_chance", "challenge_score")


def tsne_2d(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (sklearn, PCA init) of (N, F) features to (N, 2); perplexity ``min(30, (N - 1) / 3)``."""
    perplexity = float(max(2.0, min(30.0, (len(X) - 1) / 3)))
    with threadpool_limits(1, user_api="openmp"):  # OpenMP spin-waits make t-SNE 10x slower on busy CPUs
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(np.asarray(X, np.float64))


def embedding_rows(meta: pd.DataFrame, max_points: int, seed: int) -> np.ndarray:
    """Rows shown in the embedding figure: every row, or a seeded subsample of ``max_points``."""
    rows = np.arange(len(meta))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    return rows


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (floats to 3 decimals)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_rows(metrics: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per representation (the encoder first) with the challenge numbers."""
    rows = [{"representation": "encoder", **{k: metrics.get(k) for k in SUMMARY_KEYS}}]
    rows += [{"representation": name, **{k: m.get(k) for k in SUMMARY_KEYS}} for name, m in baselines.items()]
    return pd.DataFrame(rows)


def write_report(
    folder: Path,
    metrics: dict[str, Any],
    predictions: pd.DataFrame,
    per_site: pd.DataFrame,
    X: np.ndarray,
    meta: pd.DataFrame,
    site_names: Sequence[str],
    baselines: dict[str, dict[str, Any]] | None = None,
    max_points: int = 3000,
    seed: int = 0,
) -> list[Path]:
    """Write the figures and ``report.md`` into ``folder``; returns the written paths. The t-SNE figure
    draws at most ``max_points`` scans (0: none)."""
    baselines = baselines or {}
    summary = summary_rows(metrics, baselines)
    bars = summary.rename(columns={"representation": "name"})
    paths = [
        figures.site_bacc_figure(bars, metrics["site_chance"], folder / "site_bacc.png"),
        figures.per_site_mae_figure(per_site, site_names, folder / "per_site_mae.png"),
        figures.age_scatter_figure(predictions, folder / "age_scatter.png"),
    ]
    rows = embedding_rows(meta, max_points, seed) if max_points else []
    if len(rows):
        xy = tsne_2d(X[rows], seed)
        paths.append(figures.embedding_figure(xy, meta.age.to_numpy()[rows], meta.site.to_numpy()[rows],
                                              site_names, "t-SNE", folder / "embedding.png"))
    text = _markdown(metrics, summary, per_site, site_names, len(rows))
    (folder / "report.md").write_text(text)
    return [*paths, folder / "report.md"]


def _markdown(
    metrics: dict[str, Any], summary: pd.DataFrame, per_site: pd.DataFrame, site_names: Sequence[str], n_tsne: int
) -> str:
    sites = per_site[per_site.split.isin([INTERNAL, EXTERNAL])].copy()
    sites.insert(1, "site name", [site_names[int(s)] if int(s) < len(site_names) else str(s) for s in sites.site])
    alt = metrics.get("alternative_probes", {})
    lines = [
        f"# Evaluation of `{metrics.get('encoder', '?')}` on `{metrics.get('data_source', '?')}`",
        "",
        f"Folds: {metrics.get('cv', 'fixed')} ({metrics.get('fold')}); n_train={metrics['n_train']}, "
        f"n_internal={metrics['n_internal']}, n_external={metrics['n_external']} "
        f"({metrics.get('n_train_sites')} train sites, {metrics.get('n_external_sites')} unseen sites).",
        "",
        "## Challenge numbers (RAMP probes, no feature scaling)",
        "",
        "Age: `GridSearchCV(Ridge, alpha in {0.01..100}, cv=5, r2)`; site: `GridSearchCV(LogisticRegression"
        "(saga, max_iter=150), C in {0.01..100}, cv=5, balanced_accuracy)`, fitted on the train split. "
        "Site BAcc is measured on the internal test; chance = 1 / train sites. "
        f"Score = {metrics['challenge_score_version']} (lower is better).",
        "",
        markdown_table(summary),
        "",
        f"Site probe convergence warnings (saga, 150 iterations): {metrics.get('site_probe_convergence_warnings')}.",
        "",
        "![site BAcc](site_bacc.png)",
        "",
        "## Representation geometry",
        "",
        f"Alignment (Wang & Isola, two `{metrics.get('alignment_views')}` views of internal-test scans, "
        f"lower = views closer): {_fmt(metrics.get('alignment'))}. Uniformity (t=2, internal test, lower = "
        f"more spread on the sphere): {_fmt(metrics.get('uniformity'))}.",
        "",
        f"![embedding](embedding.png) (t-SNE of {n_tsne} scans: a representation without site effect shows "
        "no site clusters on the right.)" if n_tsne else "(No t-SNE figure: `embedding_points` was 0.)",
        "",
        "## Age prediction",
        "",
        "![age scatter](age_scatter.png)",
        "",
        "## Per-site age error (mean absolute error +- standard error)",
        "",
        markdown_table(sites),
        "",
        "![per-site MAE](per_site_mae.png)",
    ]
    if alt:
        rows = pd.DataFrame([{"probe (NOT the challenge protocol)": k, **{s: v.get(s) for s in SUMMARY_KEYS}}
                             for k, v in alt.items()])
        lines += ["", "## Alternative probes (opt-in, not comparable with the leaderboard)", "",
                  markdown_table(rows)]
    lines += ["", f"Train rows: MAE {_fmt(metrics.get('mae_train'))} in-sample ({TRAIN}).", ""]
    return "\n".join(lines)
