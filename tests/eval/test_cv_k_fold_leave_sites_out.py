"""``medssl evaluate --cv leave_sites_out --folds k``: k disjoint site groups, every site held out once."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from medssl.commands.evaluate import _kwargs, register
from medssl.errors import ConfigError
from medssl.eval.cv import Fold, leave_sites_out, make_folds


def _table(n_sites: int, seed: int = 0) -> pd.DataFrame:
    """12 scans per site plus 60 at random sites; p0 and p2 have a second scan (rows 1 and 3) at another site."""
    rng = np.random.default_rng(seed)
    codes = np.concatenate([np.arange(n_sites), np.repeat(np.arange(n_sites), 11), rng.integers(0, n_sites, 60)])
    sites = [f"s{k}" for k in codes]
    ids = [f"p{i}" for i in range(len(sites))]
    ids[1], ids[3] = ids[0], ids[2]
    return pd.DataFrame({"participant_id": ids, "site": sites})


def _cli_folds(table: pd.DataFrame, *argv: str) -> list[Fold]:
    """The folds ``medssl evaluate RUN --cv leave_sites_out ARGV`` makes (pipelines.evaluate passes cv_kwargs)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "run", "--cv", "leave_sites_out", *argv])
    return make_folds(table, args.cv, **_kwargs(args)["cv_kwargs"])


def _check_partition(table: pd.DataFrame, fold: Fold) -> None:
    """Rows: train / internal / external / excluded partition the table; no participant or site in two parts."""
    parts = [fold.train, fold.internal_test, fold.external_test]
    rows = np.concatenate(parts + [fold.excluded])
    assert len(rows) == len(set(rows)) == len(table)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(table.participant_id.iloc[parts[a]]) & set(table.participant_id.iloc[parts[b]])
    held = set(table.site.iloc[fold.external_test])
    assert not held & set(table.site.iloc[fold.train]) and not held & set(table.site.iloc[fold.internal_test])
    assert set(np.flatnonzero(table.site.isin(held))) == set(fold.external_test)  # whole sites held out


@pytest.mark.parametrize(("n_sites", "k", "sizes"), [(10, 5, [2, 2, 2, 2, 2]), (11, 4, [2, 3, 3, 3])])
def test_folds_k_holds_out_every_site_exactly_once(n_sites: int, k: int, sizes: list[int]) -> None:
    table = _table(n_sites)
    folds = _cli_folds(table, "--folds", str(k))
    assert len(folds) == k
    held = [set(table.site.iloc[f.external_test]) for f in folds]
    counts = Counter(site for group in held for site in group)
    assert counts == Counter({site: 1 for site in table.site.unique()})  # each site once, groups disjoint
    assert sorted(len(group) for group in held) == sizes  # balanced: sizes differ by at most one
    external = np.concatenate([f.external_test for f in folds])
    assert sorted(external) == list(range(len(table)))  # every scan is external exactly once
    for fold in folds:
        _check_partition(table, fold)
    # p0 is scanned at s0 and at row 1's site: when one of those is held out, its other scan is excluded
    for fold in folds:
        if 0 in fold.external_test and 1 not in fold.external_test:
            assert 1 in fold.excluded


def test_groups_are_deterministic_from_the_seed() -> None:
    table = _table(10)

    def groups(seed: int) -> list[frozenset[str]]:
        return [frozenset(table.site.iloc[f.external_test]) for f in leave_sites_out(table, n_groups=5, seed=seed)]

    assert groups(0) == groups(0)
    assert len({tuple(groups(seed)) for seed in range(3)}) > 1


def test_without_folds_and_with_k_sites_it_is_leave_one_site_out() -> None:
    table = _table(6)
    for folds in (_cli_folds(table), _cli_folds(table, "--folds", "6")):
        assert sorted(tuple(set(table.site.iloc[f.external_test])) for f in folds) == [(f"s{k}",) for k in range(6)]


def test_bad_group_counts_are_config_errors() -> None:
    table = _table(6)
    for k in (1, 7):
        with pytest.raises(ConfigError, match=f"n_groups={k} must be in \\[2, 6\\]"):
            leave_sites_out(table, n_groups=k)
    with pytest.raises(ConfigError, match="not both"):
        leave_sites_out(table, n_sites_out=2, n_groups=3)
