"""Figures are readable: no title, axis label or tick label falls outside the canvas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medssl.eval import figures


def texts_outside(fig: Figure) -> list[str]:
    """What is drawn outside the canvas (1 px of slack): titles and axis labels by name, and every axes'
    tight box (tick labels, legends, bar labels: what ``bbox_inches="tight"`` would have to add)."""
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # runs the layout engine, as savefig does
    width, height = fig.bbox.width, fig.bbox.height

    def outside(box) -> bool:  # type: ignore[no-untyped-def]
        return box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1

    out = []
    for ax in fig.axes:
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if text.get_text() and outside(text.get_window_extent(renderer)):
                out.append(text.get_text())
        if outside(ax.get_tightbbox(renderer)):
            out.append(f"axes {ax.get_title()!r}")
    return out


@pytest.mark.parametrize("names", [["encoder"], ["encoder", "raw_voxels", "raw_voxels_combat", "encoder_combat"]])
def test_site_bacc_figure_keeps_its_title_and_axis_label_inside(tmp_path: Path, names: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (drawn.append(fig), save(fig, path))[1])
    rows = pd.DataFrame({"name": names, "bacc_site": [0.52, 0.68, 0.41, 0.35][: len(names)]})
    figures.site_bacc_figure(rows, 1 / 6, tmp_path / "site_bacc.png")
    (fig,) = drawn
    assert texts_outside(fig) == []
    assert (tmp_path / "site_bacc.png").stat().st_size > 5_000
