"""Task labels and splits: external sites never in training or validation, participants disjoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medssl.errors import ConfigError, DataError, LeakageError
from medssl.pipelines import finetune_splits as S


def _table(n_sites: int = 5, per_site: int = 12, split: bool = False) -> pd.DataFrame:
    rows = []
    for s in range(n_sites):
        for i in range(per_site):
            rows.append({"participant_id": f"s{s}p{i}", "site": f"site{s}",
                         "diagnosis": ["control", "scz", "bd"][i % 3] if i % 4 else "scz"})
    table = pd.DataFrame(rows)
    if split:
        table["split"] = np.where(table.site == "site4", "external_test",
                                  np.where(np.arange(len(table)) % 5 == 0, "internal_test", "train"))
    return table


def test_classes_and_labels() -> None:
    table = _table()
    assert S.task_classes("scz", "control", None) == ["control", "scz"]
    assert S.task_classes(None, "control", ["scz", "control", "bd"]) == ["control", "scz", "bd"]
    labels = S.encode_labels(table, ["control", "scz"], "m.csv")
    expected = table.diagnosis.map({"control": 0, "scz": 1}).fillna(-1).astype(int).to_numpy()
    assert np.array_equal(labels, expected)
    with pytest.raises(DataError, match="asd"):
        S.encode_labels(table, ["control", "asd"], "m.csv")
    with pytest.raises(ConfigError, match="task.positive"):
        S.task_classes(None, "control", None)


@pytest.mark.parametrize("scheme", ["auto", "site_kfold", "leave_sites_out"])
def test_external_sites_never_in_training_or_validation(scheme: str) -> None:
    table = _table()
    labels = S.encode_labels(table, ["control", "scz"], "t")
    folds = S.task_folds(table, labels, scheme, seed=3, n_external_sites=1, internal_fraction=0.2, n_folds=3)
    assert len(folds) == (1 if scheme == "auto" else 3)
    for fold in folds:
        assert (labels[fold.train] >= 0).all() and (labels[fold.external_test] >= 0).all()
        fit, val = S.carve_validation(table, fold.train, labels, 0.25, seed=0)
        parts = {"train": fit, "validation": val, "internal_test": fold.internal_test,
                 "external_test": fold.external_test}
        S.check_disjoint(table, parts)
        ext_sites = set(table.site.iloc[fold.external_test])
        assert ext_sites and not ext_sites & set(table.site.iloc[np.concatenate([fit, val])])
        assert set(table.site.iloc[val]) <= set(table.site.iloc[fold.train])
        assert set(labels[val]) == {0, 1}
        assert sorted(np.concatenate([fit, val])) == sorted(fold.train)


def test_manifest_split_column_is_used() -> None:
    table = _table(split=True)
    labels = S.encode_labels(table, ["control", "scz"], "t")
    (fold,) = S.task_folds(table, labels, "auto", 0, 1, 0.2, 5)
    lab = labels >= 0
    assert set(fold.train) == set(np.flatnonzero(lab & (table.split == "train").to_numpy()))
    assert set(fold.external_test) == set(np.flatnonzero(lab & (table.site == "site4").to_numpy()))


def test_check_disjoint_fires() -> None:
    table = _table()
    rows = np.arange(len(table))
    with pytest.raises(LeakageError, match="both train and validation"):
        S.check_disjoint(table, {"train": rows[:10], "validation": rows[5:12],
                                 "internal_test": rows[:0], "external_test": rows[:0]})
    with pytest.raises(LeakageError, match="external_test site"):
        S.check_disjoint(table, {"train": rows[:5], "validation": rows[5:6],
                                 "internal_test": rows[:0], "external_test": rows[6:7]})


def test_subsample_is_stratified_and_exact() -> None:
    table = _table()
    labels = S.encode_labels(table, ["control", "scz"], "t")
    rows = np.flatnonzero(labels >= 0)
    sub = S.subsample(table, rows, labels, 20, seed=0)
    assert len(sub) == 20 and set(sub) <= set(rows)
    share = labels[rows].mean()
    assert abs(labels[sub].mean() - share) <= 1 / 20 + 1e-9
    with pytest.raises(ConfigError, match="n_labelled"):
        S.subsample(table, rows, labels, len(rows) + 1, seed=0)
