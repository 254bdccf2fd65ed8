"""CV schemes never leak a participant or an external site, and check_fold catches both leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medssl.errors import DataError, LeakageError
from medssl.eval.cv import Fold, check_fold, fixed_fold, leave_sites_out, make_folds, site_stratified_kfold


def _table(seed: int = 0) -> pd.DataFrame:
    """8 sites of 25 scans; rows (0, 1), (2, 3), ..., (22, 23) are two scans of one participant."""
    rng = np.random.default_rng(seed)
    sites = np.repeat([f"s{k}" for k in range(8)], 25)
    ids = [f"p{i}" for i in range(len(sites))]
    for i in range(0, 24, 2):
        ids[i + 1] = ids[i]
    return pd.DataFrame({"participant_id": ids, "site": sites, "age": rng.uniform(10, 80, len(ids))})


def _assert_clean(table: pd.DataFrame, fold: Fold) -> None:
    parts = [fold.train, fold.internal_test, fold.external_test]
    ids = [set(table.participant_id.iloc[p]) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert not set(table.site.iloc[fold.train]) & set(table.site.iloc[fold.external_test])
    covered = np.concatenate(parts + [fold.excluded])
    assert len(covered) == len(set(covered)) == len(table)  # a partition of the rows


def test_site_kfold_is_grouped_stratified_and_holds_out_external_sites() -> None:
    table = _table()
    folds = site_stratified_kfold(table, n_splits=5, external_sites=["s7"], seed=0)
    assert len(folds) == 5
    internal = np.concatenate([f.internal_test for f in folds])
    assert len(internal) == len(set(internal)) == (table.site != "s7").sum()  # each row tested once
    for fold in folds:
        _assert_clean(table, fold)
        assert set(table.site.iloc[fold.external_test]) == {"s7"}
        assert set(table.site.iloc[fold.internal_test]) == set(table.site.iloc[fold.train])  # stratified


def test_leave_sites_out_rotates_disjoint_site_groups() -> None:
    table = _table(1)
    folds = leave_sites_out(table, n_sites_out=2, internal_fraction=0.2, seed=3)
    assert len(folds) == 4
    held = [frozenset(table.site.iloc[f.external_test]) for f in folds]
    assert all(len(h) == 2 for h in held) and len(set().union(*held)) == 8
    for fold in folds:
        _assert_clean(table, fold)
        assert 0.1 < len(fold.internal_test) / (len(fold.train) + len(fold.internal_test)) < 0.3


def test_participant_scanned_at_a_held_out_site_is_excluded_not_leaked() -> None:
    table = _table()
    table.loc[199, "participant_id"] = table.participant_id[0]  # p0 also scanned at s7
    fold = site_stratified_kfold(table, n_splits=3, external_sites=["s7"])[0]
    _assert_clean(table, fold)
    assert set(table.participant_id.iloc[fold.excluded]) == {table.participant_id[0]}


def test_check_fold_raises_on_participant_and_site_leaks() -> None:
    table = _table()
    shared = np.flatnonzero(table.participant_id == table.participant_id[0])  # two rows of p0
    with pytest.raises(LeakageError, match="participant"):
        check_fold(table, Fold("bad", np.array([shared[0], 5]), np.array([shared[1]]), np.array([], int)))
    with pytest.raises(LeakageError, match="external_test site"):
        check_fold(table, Fold("bad", np.array([30, 31]), np.array([32]), np.array([33])))


def test_fixed_fold_reads_the_split_column_and_refuses_seen_external_sites() -> None:
    table = _table()
    table["split"] = np.where(table.site == "s7", "external_test", np.where(np.arange(200) % 5 == 4,
                                                                            "internal_test", "train"))
    table.loc[table.participant_id.duplicated(keep=False), "split"] = "train"
    fold = make_folds(table, "fixed")[0]
    _assert_clean(table, fold)
    table.loc[0, "split"] = "external_test"
    table.loc[1, "split"] = "external_test"  # p0's two scans at s0, a training site
    with pytest.raises(LeakageError):
        fixed_fold(table)
    with pytest.raises(DataError):
        fixed_fold(table.assign(split="validation"))
