"""``RUN/curves.png``: the training curves of a run, drawn from its ``metrics.jsonl`` after training.

Panels: the loss (every logged step, and the epoch means) with the other logged terms of the objective;
the learning rate; and, when ``train.probe_every`` is on, the frozen-feature probes per epoch (age MAE,
site BAcc against its chance level).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from medssl.utils.io import atomic_path


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of ``metrics.jsonl``, in order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    rows = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [s for s, _ in rows], [v for _, v in rows]


def training_curves_figure(records: list[dict[str, Any]]) -> Figure:
    """One panel per quantity over optimiser steps (x axis); epoch means drawn at each epoch's last step."""
    terms = sorted({k for r in records for k in r if k.startswith("train/") and k != "train/loss"})
    probes = [k for k in ("epoch/probe_mae_age", "epoch/probe_bacc_site") if any(k in r for r in records)]
    fig = Figure(figsize=(5 * (2 + len(probes)), 4), layout="constrained")
    loss_ax, lr_ax, *probe_axes = fig.subplots(1, 2 + len(probes), squeeze=False)[0]
    loss = _series(records, "train/loss")
    loss_ax.plot(*loss, color="C0", lw=0.8, alpha=0.6, label="loss (logged steps)")
    loss_ax.plot(*_series(records, "epoch/loss"), color="C0", marker="o", ms=3, label="loss (epoch mean)")
    for i, key in enumerate(terms, start=1):
        steps, values = _series(records, key)
        # a constant term (a switched-off regulariser) or a copy of the loss (no regulariser) says nothing
        if len(set(values)) > 1 and (steps, values) != loss:
            loss_ax.plot(steps, values, color=f"C{i}", lw=0.8, label=key.split("/", 1)[1])
    loss_ax.set(title="training loss", xlabel="optimiser step", ylabel="loss")
    loss_ax.legend(fontsize=8)
    lr_ax.plot(*_series(records, "lr"), color="C3")
    lr_ax.set(title="learning rate (first parameter group)", xlabel="optimiser step", ylabel="learning rate")
    for ax, key in zip(probe_axes, probes):
        steps, values = _series(records, key)
        ax.plot(steps, values, marker="o", color="C2", label="validation split")
        if key.endswith("bacc_site"):
            chance = _series(records, "epoch/probe_site_chance")[1]
            if chance:
                ax.axhline(chance[-1], color="k", ls="--", lw=1, label=f"chance {chance[-1]:.3f}")
            ax.set(title="site probe (lower = less site information)", ylabel="site balanced accuracy")
        else:
            ax.set(title="age probe on frozen features", ylabel="age MAE (years)")
        ax.set_xlabel("optimiser step")
        ax.legend(fontsize=8)
    return fig


def write_training_curves(run_dir: str | Path) -> Path | None:
    """Draw ``run_dir/metrics.jsonl`` into ``run_dir/curves.png`` (atomically); None when nothing was logged."""
    run_dir = Path(run_dir)
    log = run_dir / "metrics.jsonl"
    records = read_records(log) if log.is_file() else []
    if not any("train/loss" in r or "epoch/loss" in r for r in records):
        return None
    path = run_dir / "curves.png"
    with atomic_path(path) as tmp:
        training_curves_figure(records).savefig(tmp, format="png", dpi=110)
    return path
