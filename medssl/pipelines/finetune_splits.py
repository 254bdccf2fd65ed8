"""Labels and splits of a diagnosis task: classes from the manifest, test folds, validation and subsets.

Every split is made at the participant level. The validation split (early stopping, C selection) is
carved from the training rows of a fold, so it holds training sites only; the external test holds sites
that never occur in training or validation (``medssl.eval.cv.check_fold`` enforces it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from medssl.errors import ConfigError, DataError, LeakageError
from medssl.eval.cv import EXTERNAL, INTERNAL, TRAIN, Fold, leave_sites_out, make_folds


def task_classes(positive: str | None, control: str, classes: Sequence[str] | None) -> list[str]:
    """Ordered class names, control first: ``[control, positive]`` or ``[control, *classes]``."""
    if classes:
        if positive:
            raise ConfigError("set either task.positive (binary) or task.classes (multiclass), not both")
        rest = [c for c in classes if c != control]
        if not rest:
            raise ConfigError(f"task.classes={list(classes)} needs at least one label besides {control!r}")
        return [control, *rest]
    if not positive:
        raise ConfigError("task.positive is not set: give the diagnosis label of the positive class, "
                          "e.g. task.positive=scz (or task.classes=[...] for a multiclass task)")
    if positive == control:
        raise ConfigError(f"task.positive and task.control are both {control!r}")
    return [control, positive]


def encode_labels(table: pd.DataFrame, classes: list[str], where: str) -> np.ndarray:
    """Integer label per row (index into ``classes``), -1 for rows of other diagnoses.

    Raises:
        DataError: a class has no row (the message lists the diagnoses present).
    """
    diagnosis = table["diagnosis"].astype(str).str.strip()
    present = diagnosis.value_counts().to_dict()
    missing = [c for c in classes if c not in present]
    if missing:
        raise DataError(
            f"{where}: no row has diagnosis {missing}; the diagnosis column holds {present}. "
            "Set task.positive / task.control / task.classes to labels of this column"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    return diagnosis.map(lambda d: lookup.get(d, -1)).to_numpy(dtype=int)


def task_folds(
    table: pd.DataFrame, labels: np.ndarray, scheme: str, seed: int, n_external_sites: int,
    internal_fraction: float, n_folds: int,
) -> list[Fold]:
    """Test folds over the labelled rows (indices into ``table``).

    ``auto``: the manifest's ``split`` column when it holds ``train`` rows, else ``n_external_sites``
    sites held out as the external test and ``internal_fraction`` of the other participants as the
    internal test. ``fixed``, ``site_kfold`` and ``leave_sites_out`` are those of ``medssl.eval.cv``.
    """
    rows = np.flatnonzero(labels >= 0)
    sub = table.iloc[rows].reset_index(drop=True)
    has_split = "split" in sub and (sub["split"].astype(str) == TRAIN).any()
    if scheme == "auto":
        scheme = "fixed" if has_split else "hold_out_sites"
    if scheme == "hold_out_sites":
        folds = leave_sites_out(sub, n_sites_out=n_external_sites, n_folds=1,
                                internal_fraction=internal_fraction, seed=seed)
    elif scheme == "site_kfold":
        sites = sorted(sub.site.unique(), key=str)
        ext = list(np.random.default_rng(seed).permutation(np.array(sites, dtype=object))[:n_external_sites])
        folds = make_folds(sub, "site_kfold", n_splits=n_folds, external_sites=ext, seed=seed)
    elif scheme == "leave_sites_out":
        folds = make_folds(sub, "leave_sites_out", n_sites_out=n_external_sites, n_folds=n_folds,
                           internal_fraction=internal_fraction, seed=seed)
    else:
        folds = make_folds(sub, scheme)
    return [Fold(f.name, rows[f.train], rows[f.internal_test], rows[f.external_test], rows[f.excluded])
            for f in folds]


def carve_validation(
    table: pd.DataFrame, rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split training ``rows`` into (train, validation), stratified by label and grouped by participant.

    Uses the first fold of ``StratifiedGroupKFold(round(1 / fraction))``, so the validation holds about
    ``fraction`` of the participants, from the training sites only.
    """
    if not 0.0 < fraction < 0.5:
        raise ConfigError(f"finetune.val_fraction={fraction} must be in (0, 0.5)")
    y = labels[rows]
    n_splits = max(2, round(1 / fraction))
    counts = np.bincount(y, minlength=labels.max() + 1)
    if counts.min() < n_splits:
        raise DataError(
            f"the training split has {counts.tolist()} rows per class; at least {n_splits} per class are "
            "needed to carve a stratified validation split (raise finetune.val_fraction or add subjects)"
        )
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fit, val = next(cv.split(np.zeros(len(rows)), y, groups=table.participant_id.iloc[rows].astype(str)))
    return rows[fit], rows[val]


def subsample(
    table: pd.DataFrame, rows: np.ndarray, labels: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """``n`` participants of ``rows`` drawn stratified by label (all scans of each kept participant)."""
    ids = table.participant_id.iloc[rows].astype(str).to_numpy()
    first = pd.Series(labels[rows], index=ids).groupby(level=0).first()
    if n > len(first):
        raise ConfigError(
            f"train.n_labelled asks for {n} participants but the training split holds {len(first)}; "
            "use sizes up to that"
        )
    if n == len(first):
        return rows
    keep, _ = train_test_split(first.index.to_numpy(), train_size=n, stratify=first.to_numpy(),
                               random_state=seed)
    return rows[np.isin(ids, keep)]


def check_disjoint(table: pd.DataFrame, parts: dict[str, np.ndarray]) -> None:
    """``LeakageError`` if a participant is in two parts or an external site is in train/validation."""
    ids = {k: set(table.participant_id.iloc[v].astype(str)) for k, v in parts.items()}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = ids[a] & ids[b]
            if shared:
                raise LeakageError(f"participant(s) {sorted(shared)[:5]} are in both {a} and {b}")
    seen = set(table.site.iloc[np.concatenate([parts[TRAIN], parts["validation"]])])
    leaked = seen & set(table.site.iloc[parts[EXTERNAL]])
    if leaked:
        raise LeakageError(f"external_test site(s) {sorted(leaked, key=str)} occur in train/validation")


def label_counts(labels: np.ndarray, classes: list[str], parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{part: {class: n}}`` for each part of a fold."""
    return {name: {c: int((labels[rows] == k).sum()) for k, c in enumerate(classes)}
            for name, rows in parts.items()}


PART_NAMES = (TRAIN, "validation", INTERNAL, EXTERNAL)
