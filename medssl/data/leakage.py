"""Leakage guards: the same participant (or study) in two cohorts, or in two splits of one cohort.

Pretraining on a cohort that contains the downstream participants (or the downstream study, e.g.
ABIDE in pretraining vs an ASD fine-tuning cohort) inflates transfer results; so does a participant in
both ``train`` and a test split, or an ``external_test`` site that also appears in ``train``.
Values are compared as strings; empty values are ignored.
"""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

from medssl.data.cohort import Cohort
from medssl.errors import LeakageError

Mode = Literal["error", "warn"]


def _report(problems: list[str], mode: Mode) -> list[str]:
    if mode not in ("error", "warn"):
        raise ValueError(f"mode must be 'error' or 'warn', got {mode!r}")
    if problems and mode == "error":
        raise LeakageError("; ".join(problems))
    for problem in problems:
        warnings.warn(f"leakage: {problem}", stacklevel=3)
    return problems


def _examples(values: set[str], k: int = 5) -> str:
    shown = sorted(values)[:k]
    return ", ".join(shown) + (f" ... ({len(values)} in all)" if len(values) > k else "")


def check_leakage(
    cohort_a: Cohort,
    cohort_b: Cohort,
    on: Sequence[str] = ("participant_id", "study"),
    mode: Mode = "error",
) -> list[str]:
    """Refuse (``mode="error"``, LeakageError) or warn when the cohorts share a value of a column in ``on``.

    Returns:
        The problems found (empty when the cohorts are disjoint); with ``mode="warn"`` each is also
        issued as a ``UserWarning``.
    """
    problems = []
    for col in on:
        for cohort in (cohort_a, cohort_b):
            if col not in cohort.table.columns:
                choices = list(cohort.table.columns)
                raise ValueError(f"column {col!r} not in the table of {cohort.source}; choose from {choices}")
        shared = (set(cohort_a.table[col].astype(str)) & set(cohort_b.table[col].astype(str))) - {""}
        if shared:
            problems.append(
                f"{len(shared)} {col} value(s) in both {cohort_a.source} and {cohort_b.source}: "
                f"{_examples(shared)}; remove them from one cohort (pretraining) before transfer"
            )
    return _report(problems, mode)


def check_split_leakage(cohort: Cohort, mode: Mode = "error") -> list[str]:
    """Within one cohort: a participant in two splits, or an ``external_test`` site seen in ``train``."""
    table = cohort.table
    problems = []
    splits_per_id = table.groupby("participant_id")["split"].nunique()
    crossing = set(splits_per_id.index[splits_per_id > 1])
    if crossing:
        problems.append(
            f"{len(crossing)} participant(s) of {cohort.source} in more than one split: "
            f"{_examples(crossing)}; keep all scans of a participant in one split"
        )
    train_sites = set(table.loc[table["split"] == "train", "site"])
    ext_sites = set(table.loc[table["split"] == "external_test", "site"]) & train_sites
    if ext_sites - {""}:
        problems.append(
            f"external_test site(s) {_examples(ext_sites - {''})} of {cohort.source} also appear in "
            "train; external sites must be unseen in training"
        )
    return _report(problems, mode)
