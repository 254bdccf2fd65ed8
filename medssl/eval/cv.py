"""Train / internal-test / external-test folds for cohorts with or without fixed splits.

A fold always keeps a participant in one part only, and its ``external_test`` holds only sites that
never occur in ``train`` (the challenge's "external" MAE). ``check_fold`` enforces both and raises
``LeakageError``. Schemes:

- ``fixed_fold``: the cohort's own ``split`` column (OpenBHB's train / internal_test / external_test).
- ``site_stratified_kfold``: k folds of the non-held-out sites, stratified by site and grouped by
  participant (``StratifiedGroupKFold``); a fixed list of held-out sites is the external test of every fold.
- ``leave_sites_out``: each fold holds out a group of sites as external; the remaining participants are
  split into train / internal test, stratified by site and grouped by participant. ``n_groups=k`` is
  k-fold leave-site-out (every site held out exactly once, the lecture's "5-fold CV Leave-Site-Out").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from medssl.errors import ConfigError, DataError, LeakageError

TRAIN, INTERNAL, EXTERNAL = "train", "internal_test", "external_test"
PARTS = (TRAIN, INTERNAL, EXTERNAL)


@dataclass(frozen=True)
class Fold:
    """Row indices (into the cohort table) of each part; ``excluded`` rows are in no part, on purpose."""

    name: str
    train: np.ndarray
    internal_test: np.ndarray
    external_test: np.ndarray
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def labels(self, n_rows: int) -> np.ndarray:
        """Part name of every row (``""`` for rows in no part), shape (n_rows,)."""
        out = np.full(n_rows, "", dtype=object)
        for name in PARTS:
            out[self.part(name)] = name
        return out


def _require(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"cohort table lacks column(s) {missing} needed for evaluation folds")


def check_fold(table: pd.DataFrame, fold: Fold) -> None:
    """Raise ``LeakageError`` if a row or participant is in two parts or an external site is in train."""
    _require(table, ["participant_id", "site"])
    parts = {name: fold.part(name) for name in PARTS}
    for i, a in enumerate(PARTS):
        for b in PARTS[i + 1 :]:
            rows = np.intersect1d(parts[a], parts[b])
            if len(rows):
                raise LeakageError(f"fold {fold.name}: rows {rows[:5].tolist()} are in both {a} and {b}")
            ids = set(table.participant_id.iloc[parts[a]]) & set(table.participant_id.iloc[parts[b]])
            if ids:
                raise LeakageError(
                    f"fold {fold.name}: participant(s) {sorted(ids)[:5]} appear in both {a} and {b}"
                )
    seen = set(table.site.iloc[parts[TRAIN]])
    leaked = sorted(seen & set(table.site.iloc[parts[EXTERNAL]]), key=str)
    if leaked:
        raise LeakageError(
            f"fold {fold.name}: external_test site(s) {leaked[:5]} also occur in train; the external score "
            "must come from sites unseen in training"
        )


def fixed_fold(table: pd.DataFrame) -> Fold:
    """The cohort's ``split`` column as one fold (rows of other splits are ``excluded``)."""
    _require(table, ["split"])
    split = table["split"].astype(str).to_numpy()
    if not (split == TRAIN).any():
        raise DataError(f"the cohort has no '{TRAIN}' rows; use a CV scheme (site_kfold or leave_sites_out)")
    idx = {name: np.flatnonzero(split == name) for name in PARTS}
    fold = Fold("fixed", idx[TRAIN], idx[INTERNAL], idx[EXTERNAL], np.flatnonzero(~np.isin(split, PARTS)))
    check_fold(table, fold)
    return fold


def _train_internal(
    table: pd.DataFrame, rows: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    sub = table.iloc[rows]
    return [
        (rows[tr], rows[te])
        for tr, te in cv.split(np.zeros(len(rows)), sub.site.astype(str), groups=sub.participant_id.astype(str))
    ]


def _hold_out(table: pd.DataFrame, external_sites: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of external sites, rows usable for training, rows excluded (participants scanned at both)."""
    is_ext = table.site.isin(list(external_sites)).to_numpy()
    ext_ids = set(table.participant_id[is_ext])
    touched = table.participant_id.isin(ext_ids).to_numpy() & ~is_ext
    return np.flatnonzero(is_ext), np.flatnonzero(~is_ext & ~touched), np.flatnonzero(touched)


def site_stratified_kfold(
    table: pd.DataFrame, n_splits: int = 5, external_sites: Sequence[object] = (), seed: int = 0
) -> list[Fold]:
    """k folds stratified by site and grouped by participant; ``external_sites`` are held out of all folds.

    Participants also scanned at an external site are ``excluded`` from train and internal test.
    """
    _require(table, ["participant_id", "site"])
    unknown = sorted(set(external_sites) - set(table.site), key=str)
    if unknown:
        raise ConfigError(f"external site(s) {unknown} are not in the cohort")
    ext, rest, excluded = _hold_out(table, external_sites)
    folds = [
        Fold(f"site_kfold{k}", tr, te, ext, excluded)
        for k, (tr, te) in enumerate(_train_internal(table, rest, n_splits, seed))
    ]
    for fold in folds:
        check_fold(table, fold)
    return folds


def _site_groups(table: pd.DataFrame, n_groups: int, seed: int) -> list[list[object]]:
    """The sites split into ``n_groups`` disjoint groups covering them all, of floor(S/k) or ceil(S/k) sites.

    ``GroupKFold(shuffle=True)`` over sites: a seeded permutation of the sorted sites cut into k runs.
    """
    cv = GroupKFold(n_splits=n_groups, shuffle=True, random_state=seed)
    splits = cv.split(np.zeros(len(table)), groups=table.site.astype(str).to_numpy())
    return [sorted(table.site.iloc[test].unique(), key=str) for _, test in splits]


def leave_sites_out(
    table: pd.DataFrame,
    n_sites_out: int = 1,
    n_folds: int | None = None,
    internal_fraction: float = 0.1,
    seed: int = 0,
    n_groups: int | None = None,
) -> list[Fold]:
    """Each fold holds out one group of sites (disjoint across folds) as its external test.

    Groups (both seeded by ``seed``):

    - ``n_groups=k``: k-fold leave-site-out. All S sites of the table fall into k groups of floor(S/k) or
      ceil(S/k) sites, k folds, every site held out exactly once (``k = S``: leave-one-site-out).
    - otherwise: groups of exactly ``n_sites_out`` shuffled sites (the ``S mod n_sites_out`` left over are
      never held out), the first ``n_folds`` of them (default every group); ``n_sites_out=1`` with no
      ``n_folds`` is leave-one-site-out, ``n_folds=1`` a single hold-out.

    The other participants are split train / internal test (about ``internal_fraction`` of them), stratified
    by site and grouped by participant; those also scanned at a held-out site are ``excluded``.
    """
    _require(table, ["participant_id", "site"])
    if not 0.0 < internal_fraction < 0.5:
        raise ConfigError(f"internal_fraction={internal_fraction} must be in (0, 0.5)")
    sites = np.array(sorted(table.site.unique(), key=str), dtype=object)
    if n_groups is not None:
        if n_sites_out != 1 or n_folds is not None:
            raise ConfigError("leave_sites_out: give n_groups (k groups covering all sites) or "
                              "n_sites_out/n_folds (fixed-size groups), not both")
        if not 2 <= n_groups <= len(sites):
            raise ConfigError(f"n_groups={n_groups} must be in [2, {len(sites)}] ({len(sites)} sites)")
        groups = _site_groups(table, n_groups, seed)
    else:
        if not 1 <= n_sites_out < len(sites):
            raise ConfigError(f"n_sites_out={n_sites_out} must be in [1, {len(sites) - 1}] ({len(sites)} sites)")
        sites = sites[np.random.default_rng(seed).permutation(len(sites))]
        groups = [list(sites[i : i + n_sites_out]) for i in range(0, len(sites) - n_sites_out + 1, n_sites_out)]
        groups = groups[:n_folds]
    folds = []
    for k, group in enumerate(groups):
        ext, rest, excluded = _hold_out(table, group)
        train, internal = _train_internal(table, rest, max(2, round(1 / internal_fraction)), seed)[0]
        folds.append(Fold(f"leave_sites_out{k}", train, internal, ext, excluded))
        check_fold(table, folds[-1])
    return folds


def make_folds(table: pd.DataFrame, scheme: str = "fixed", **kwargs: object) -> list[Fold]:
    """Dispatch on ``scheme``: ``fixed``, ``site_kfold`` or ``leave_sites_out``."""
    if scheme == "fixed":
        return [fixed_fold(table)]
    if scheme == "site_kfold":
        return site_stratified_kfold(table, **kwargs)  # type: ignore[arg-type]
    if scheme == "leave_sites_out":
        return leave_sites_out(table, **kwargs)  # type: ignore[arg-type]
    raise ConfigError(f"unknown CV scheme {scheme!r}; choose one of fixed, site_kfold, leave_sites_out")
