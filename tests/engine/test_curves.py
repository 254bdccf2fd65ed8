"""``RUN/curves.png``: the loss, learning-rate and probe curves are drawn from metrics.jsonl as logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medssl.engine.curves import training_curves_figure, write_training_curves


def records() -> list[dict]:
    steps = [{"step": s, "epoch": 1 + (s - 1) // 4, "lr": 0.1 / s, "train/loss": 3.0 - 0.05 * s,
              "train/contrastive": 3.0 - 0.1 * s, "train/regularizer": 0.05 * s, "train/std": 0.0}
             for s in range(1, 9)]
    epochs = [{"step": 4, "epoch": 1, "epoch/loss": 2.75, "epoch/probe_mae_age": 9.0, "epoch/probe_bacc_site": 0.5,
               "epoch/probe_site_chance": 0.25},
              {"step": 8, "epoch": 2, "epoch/loss": 2.35, "epoch/probe_mae_age": 7.0, "epoch/probe_bacc_site": 0.4,
               "epoch/probe_site_chance": 0.25}]
    return steps[:4] + epochs[:1] + steps[4:] + epochs[1:]


def test_each_panel_draws_the_logged_values() -> None:
    fig = training_curves_figure(records())
    loss, lr, age, site = fig.axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in loss.get_lines()}
    assert lines["loss (logged steps)"] == (list(range(1, 9)), pytest.approx([3.0 - 0.05 * s for s in range(1, 9)]))
    assert lines["loss (epoch mean)"] == ([4, 8], [2.75, 2.35])
    assert lines["regularizer"][1] == pytest.approx([0.05 * s for s in range(1, 9)])
    assert "contrastive" in lines and "std" not in lines  # a constant term is left out
    only_loss = [{**r, "train/contrastive": r["train/loss"]} if "train/loss" in r else r for r in records()]
    labels = [line.get_label() for line in training_curves_figure(only_loss).axes[0].get_lines()]
    assert "contrastive" not in labels  # a copy of the loss (no regulariser) is left out
    assert list(lr.get_lines()[0].get_ydata()) == pytest.approx([0.1 / s for s in range(1, 9)])
    assert list(age.get_lines()[0].get_ydata()) == [9.0, 7.0]
    assert list(site.get_lines()[0].get_ydata()) == [0.5, 0.4] and site.get_lines()[1].get_ydata()[0] == 0.25


def test_write_training_curves(tmp_path: Path) -> None:
    assert write_training_curves(tmp_path) is None  # nothing logged: no figure
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    path = write_training_curves(tmp_path)
    assert path == tmp_path / "curves.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert len(training_curves_figure(records()[:4]).axes) == 2  # no probes logged: loss and lr only
