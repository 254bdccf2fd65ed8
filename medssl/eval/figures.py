"""Site-effect figures (PNG), each readable on its own: titled, axes labelled with units, legend with n.

Matplotlib's object API (``Figure``) is used so no global backend is touched (safe in notebooks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from medssl.eval.cv import EXTERNAL, INTERNAL, TRAIN

SPLIT_COLORS = {TRAIN: "#9e9e9e", INTERNAL: "#1f77b4", EXTERNAL: "#d62728"}
SPLIT_LABELS = {TRAIN: "train (in-sample)", INTERNAL: "internal test", EXTERNAL: "external test (unseen sites)"}


def _save(fig: Figure, path: Path) -> Path:
    """Lay out and save; ``bbox_inches="tight"`` keeps any text that would still overflow the canvas."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def site_bacc_figure(rows: pd.DataFrame, chance: float, path: Path) -> Path:
    """Bars of site BAcc per representation with the chance level ``1 / n_train_sites`` as a line.

    Args:
        rows: columns ``name``, ``bacc_site``.
    """
    fig = Figure(figsize=(max(5.5, 1.6 + 1.3 * len(rows)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(rows["name"], 100 * rows["bacc_site"], color="#1f77b4")
    ax.bar_label(bars, fmt="%.1f")
    ax.axhline(100 * chance, color="k", ls="--", label=f"chance = 1/{round(1 / chance)} = {100 * chance:.1f} %")
    ax.set_ylabel("site balanced accuracy (%)\nlower = less site information")
    ax.set_title("Site decodable from the representation\n(internal test)")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper right")
    ax.tick_params(axis="x", labelrotation=20)
    return _save(fig, path)


def per_site_mae_figure(table: pd.DataFrame, site_names: Sequence[str], path: Path) -> Path:
    """Per-site age MAE +- standard error on the test splits, coloured by split, ``n`` in the tick label.

    Args:
        table: ``per_site_table`` output (``split``, ``site`` code, ``n``, ``mae``, ``mae_se``).
    """
    rows = table[table.split.isin([INTERNAL, EXTERNAL])].sort_values(["split", "mae"]).reset_index(drop=True)
    fig = Figure(figsize=(max(6.0, 0.35 * len(rows) + 2), 4.5))
    ax = fig.add_subplot()
    for split in (INTERNAL, EXTERNAL):
        sel = rows[rows.split == split]
        ax.bar(sel.index, sel.mae, yerr=sel.mae_se.fillna(0), color=SPLIT_COLORS[split], capsize=2,
               label=SPLIT_LABELS[split])
    ax.set_xticks(rows.index, [f"{_name(site_names, s)} (n={n})" for s, n in zip(rows.site, rows.n)],
                  rotation=70, fontsize=7)
    ax.set_ylabel("age MAE (years), bar = +-1 s.e.")
    ax.set_title("Age error per acquisition site")
    ax.legend()
    return _save(fig, path)


def _name(site_names: Sequence[str], code: Any) -> str:
    code = int(code)
    return str(site_names[code]) if 0 <= code < len(site_names) else str(code)


def age_scatter_figure(pred: pd.DataFrame, path: Path) -> Path:
    """Predicted vs true age, coloured by split, with the identity line; MAE of each split in the legend."""
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    for split in (TRAIN, INTERNAL, EXTERNAL):
        sel = pred[pred.split == split]
        if len(sel):
            err = (sel.age_pred - sel.age).abs().mean()
            ax.scatter(sel.age, sel.age_pred, s=8, alpha=0.35 if split == TRAIN else 0.8,
                       color=SPLIT_COLORS[split], label=f"{SPLIT_LABELS[split]}: n={len(sel)}, MAE={err:.2f}")
    lo, hi = float(min(pred.age.min(), pred.age_pred.min())), float(max(pred.age.max(), pred.age_pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect prediction")
    ax.set_xlabel("chronological age (years)")
    ax.set_ylabel("predicted age (years, ridge probe)")
    ax.set_title("Brain age from the frozen representation")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def embedding_figure(
    xy: np.ndarray, age: np.ndarray, site: np.ndarray, site_names: Sequence[str], method: str, path: Path
) -> Path:
    """2-D embedding (t-SNE) side by side: coloured by age (colour bar) and by acquisition site."""
    fig = Figure(figsize=(12, 5.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    points = left.scatter(xy[:, 0], xy[:, 1], c=age, cmap="viridis", s=8)
    fig.colorbar(points, ax=left, label="age (years)")
    left.set_title(f"{method} of the representation, coloured by age")
    codes = np.unique(site)
    cmap = _site_colors(len(codes))
    for k, code in enumerate(codes):
        sel = site == code
        right.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap[k], label=_name(site_names, code))
    right.set_title(f"... coloured by site ({len(codes)} sites): clusters = site effect")
    if len(codes) <= 20:
        right.legend(fontsize=6, markerscale=2, loc="best", ncol=2)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
    return _save(fig, path)


def _site_colors(n: int) -> list[Any]:
    cmap = colormaps["tab20" if n <= 20 else "gist_ncar"]
    return [cmap(i / max(n - 1, 1)) if n > 20 else cmap(i) for i in range(n)]


def comparison_figure(table: pd.DataFrame, chance: float | None, path: Path) -> Path:
    """External MAE vs site BAcc per run, over contours of the challenge score ``MAE * BAcc^0.3``."""
    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot()
    b = np.linspace(1e-3, max(1.0, float(table.bacc_site.max()) * 1.1), 200)
    m = np.linspace(0, float(table.mae_external.max()) * 1.3 + 1, 200)
    B, Mx = np.meshgrid(b, m)
    contours = ax.contour(100 * B, Mx, Mx * B**0.3, levels=8, colors="#bbbbbb", linewidths=0.8)
    ax.clabel(contours, fmt="Lc=%.2f", fontsize=7)
    ax.scatter(100 * table.bacc_site, table.mae_external, s=40, color="#1f77b4", zorder=3)
    for _, row in table.iterrows():
        ax.annotate(str(row["run"]), (100 * row.bacc_site, row.mae_external), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    if chance:
        ax.axvline(100 * chance, color="k", ls="--", lw=1, label=f"site chance {100 * chance:.1f} %")
        ax.legend(loc="upper right")
    ax.set_xlim(0, 100 * min(1.0, float(table.bacc_site.max()) * 1.2 + 0.05))
    ax.set_ylim(0, float(table.mae_external.max()) * 1.3 + 1)
    ax.set_xlabel("site balanced accuracy on the internal test (%) - lower is better")
    ax.set_ylabel("age MAE on unseen sites (years) - lower is better")
    ax.set_title("Runs compared: grey lines = equal challenge score Lc")
    return _save(fig, path)
