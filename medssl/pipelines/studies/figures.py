"""Study figures (matplotlib, Agg, written atomically): bars with seed error bars, curves, heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from medssl.utils.io import atomic_path


def _subplots(ncols: int, nrows: int = 1, size: tuple[float, float] = (4.2, 3.6)) -> tuple[Any, Any]:
    matplotlib.use("Agg")  # here, not at import: importing medssl leaves a notebook's backend alone
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def bars(stats: pd.DataFrame, label: str, keys: Sequence[str], path: Path, title: str = "",
         hlines: dict[str, float] | None = None) -> Path:
    """One panel per metric: mean per ``label`` row with ±1 std (over seeds) error bars.

    ``hlines`` draws a dashed reference per metric (e.g. the site BAcc at chance).
    """
    fig, axes = _subplots(len(keys))
    x = np.arange(len(stats))
    for ax, key in zip(axes[0], keys):
        ax.bar(x, stats[key + "_mean"], yerr=stats[key + "_std"], capsize=3, color="tab:blue", alpha=0.8)
        if hlines and key in hlines:
            ax.axhline(hlines[key], ls="--", c="k", lw=1, label="chance")
            ax.legend(loc="best", fontsize=8)
        ax.set_xticks(x, stats[label].astype(str), rotation=45, ha="right", fontsize=8)
        ax.set_title(key, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def grouped_bars(stats: pd.DataFrame, group: str, label: str, keys: Sequence[str], path: Path,
                 title: str = "") -> Path:
    """One row of panels per metric and one panel per ``group`` (e.g. task); bars per ``label`` (init)."""
    groups = list(dict.fromkeys(stats[group]))
    fig, axes = _subplots(len(groups), len(keys))
    for r, key in enumerate(keys):
        for c, g in enumerate(groups):
            ax, part = axes[r][c], stats[stats[group] == g]
            x = np.arange(len(part))
            ax.bar(x, part[key + "_mean"], yerr=part[key + "_std"], capsize=3, alpha=0.8)
            ax.axhline(0.5, ls="--", c="k", lw=1)
            ax.set_ylim(0.0, 1.0)
            ax.set_xticks(x, part[label].astype(str), rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{g}: {key}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def curves(stats: pd.DataFrame, group: str, line: str, x: str, key: str, path: Path, title: str = "",
           logx: bool = False) -> Path:
    """One panel per ``group``; ``key`` mean ± std (shaded) against ``x``, one line per ``line`` value."""
    groups = list(dict.fromkeys(stats[group]))
    fig, axes = _subplots(len(groups))
    for ax, g in zip(axes[0], groups):
        part = stats[stats[group] == g]
        for name, sub in part.groupby(line, sort=False):
            sub = sub.sort_values(x)
            mean, std = sub[key + "_mean"].to_numpy(), sub[key + "_std"].to_numpy()
            ax.plot(sub[x], mean, marker="o", label=str(name))
            ax.fill_between(sub[x], mean - std, mean + std, alpha=0.15)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        ax.set_title(str(g), fontsize=10)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def heatmaps(stats: pd.DataFrame, group: str, rows: str, cols: str, key: str, path: Path,
             title: str = "") -> Path:
    """One heatmap per ``group``: ``key`` mean on the ``rows`` x ``cols`` grid, cells annotated."""
    groups = list(dict.fromkeys(stats[group]))
    fig, axes = _subplots(len(groups))
    lo, hi = stats[key + "_mean"].min(), stats[key + "_mean"].max()
    for ax, g in zip(axes[0], groups):
        grid = stats[stats[group] == g].pivot(index=rows, columns=cols, values=key + "_mean")
        im = ax.imshow(grid.to_numpy(), cmap="viridis_r", vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set_xlabel(cols)
        ax.set_ylabel(rows)
        ax.set_title(f"{g}: {key} (lower is better)", fontsize=9)
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def frontier(stats: pd.DataFrame, x: str, y: str, path: Path, title: str = "",
             hlines: dict[str, float] | None = None) -> Path:
    """One point per arm at (mean ``x``, mean ``y``) with ±1 std (over seeds) bars in both directions,
    labelled; ``hlines`` draws named horizontal references (e.g. chance and 1.5 x chance)."""
    fig, axes = _subplots(1, size=(5.6, 4.4))
    ax = axes[0][0]
    for row in stats.itertuples(index=False):
        r = row._asdict()
        ax.errorbar(r[x + "_mean"], r[y + "_mean"], xerr=r[x + "_std"], yerr=r[y + "_std"], fmt="o", capsize=3)
        ax.annotate(str(r["arm"]), (r[x + "_mean"], r[y + "_mean"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    for name, value in (hlines or {}).items():
        ax.axhline(value, ls="--", c="k", lw=1, alpha=0.6)
        ax.annotate(name, (ax.get_xlim()[0], value), fontsize=8, va="bottom")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
