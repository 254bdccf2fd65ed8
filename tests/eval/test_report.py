"""Report figures and markdown from planted predictions; raw-voxel features and the ComBat baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.eval.baselines import RawVoxels, combat_covariates, harmonise
from medssl.eval.cv import Fold
from medssl.eval.protocol import per_site_table, score_fold
from medssl.eval.report import markdown_table, write_report


def _planted(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame, Fold]:
    """4 sites (site 3 external); features = age / 10 + noise, plus 4 dimensions with a site offset."""
    rng = np.random.default_rng(seed)
    site = np.repeat(np.arange(4), 40)
    age = rng.uniform(10, 80, len(site))
    X = np.c_[age / 10 + rng.normal(0, 0.3, len(site)), rng.normal(size=(len(site), 4)) + 2.0 * site[:, None]]
    meta = pd.DataFrame({"participant_id": [f"p{i}" for i in range(len(site))], "site": site, "age": age,
                         "sex": rng.integers(0, 2, len(site))})
    rows = rng.permutation(120)
    return X, meta, Fold("planted", np.sort(rows[:80]), np.sort(rows[80:]), np.arange(120, 160))


def test_write_report_produces_readable_figures_and_tables(tmp_path: Path) -> None:
    X, meta, fold = _planted()
    metrics, pred = score_fold(X, meta, fold)
    metrics.update(alignment=0.5, uniformity=-2.0, alignment_views="yaware")
    per_site = per_site_table(pred)
    paths = write_report(tmp_path, metrics, pred, per_site, X, meta, ["A", "B", "C", "D"],
                         {"raw_voxels": dict(metrics, bacc_site=0.9)})
    for name in ("site_bacc.png", "per_site_mae.png", "age_scatter.png", "embedding.png"):
        assert (tmp_path / name).stat().st_size > 10_000 and tmp_path / name in paths
    text = (tmp_path / "report.md").read_text()
    assert "| encoder |" in text and "| raw_voxels |" in text and "0.900" in text
    assert f"{metrics['mae_external']:.3f}" in text
    ext = per_site[per_site.split == "external_test"]
    assert ext.site.tolist() == [3] and ext.n.tolist() == [40]
    assert "| internal_test | A | 0 |" in text and "| external_test | D | 3 | 40 |" in text


def test_no_embedding_figure_when_asked_for_none(tmp_path: Path) -> None:
    X, meta, fold = _planted()
    metrics, pred = score_fold(X, meta, fold)
    metrics.update(alignment=0.5, uniformity=-2.0, alignment_views="yaware")
    paths = write_report(tmp_path, metrics, pred, per_site_table(pred), X, meta, ["A", "B", "C", "D"], max_points=0)
    assert not (tmp_path / "embedding.png").exists() and len(paths) == 4  # three figures and report.md
    text = (tmp_path / "report.md").read_text()
    assert "embedding.png" not in text and "No t-SNE figure" in text


def test_markdown_table_formats_floats_and_missing() -> None:
    text = markdown_table(pd.DataFrame({"a": [1.23456, None], "b": ["x", "y"]}))
    assert text.splitlines()[2] == "| 1.235 | x |" and "n/a" in text.splitlines()[3]


def test_raw_voxels_pools_to_the_feature_budget() -> None:
    raw = RawVoxels((32, 40, 32), max_features=1000)
    assert raw.factor == 4 and raw.num_features == 8 * 10 * 8
    x = torch.arange(2 * 32 * 40 * 32, dtype=torch.float32).reshape(2, 1, 32, 40, 32)
    z = raw(x)
    assert z.shape == (2, 640)
    assert z[0, 0] == pytest.approx(x[0, 0, :4, :4, :4].mean().item())


def test_combat_baseline_removes_the_planted_site_offset() -> None:
    X, meta, fold = _planted(1)
    harmonised, info = harmonise(X, meta, fold)
    before, _ = score_fold(X, meta, fold)
    after, _ = score_fold(harmonised, meta, fold)
    assert before["bacc_site"] > 0.9 and after["bacc_site"] < 0.6
    assert after["mae_internal"] < 4.0  # the age feature survives
    assert info["combat_covariates"] == ["age", "sex"]
    np.testing.assert_allclose(harmonised[fold.external_test], X[fold.external_test], rtol=1e-6)  # unseen site
    _, names = combat_covariates(meta.assign(sex=-1), fold.train)
    assert names == ["age"]
