"""Leakage guards: the same participant (or study) in two cohorts, or in two splits of one cohort.

Pretraining on a cohort that contains the downstream participants (or the downstream study, e.g.
ABIDE in pretraining vs an ASD fine-tuning cohort) inflates transfer results; so does a participant in
both ``train`` and a test split, or an ``external_test`` site that also appears in ``train``.
Values are compared as strings; empty values are ignored. Study names are compared loosely, because
cohorts spell them differently: case, ``-``/``_``/spaces and release suffixes do not matter ("ABIDE II",
"abide_2" and "ABIDE" all meet as ABIDE). OpenBHB's ``participants.tsv`` codes its studies as integers
without a public key, so a coded study column cannot be compared with names: that is reported as a
warning (never a silent pass), and the participant check still runs.
"""

from __future__ import annotations

import re
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


_RELEASE = re.compile(r"\s+(?:[ivx]+|\d+)$")  # "abide ii", "abide 2": a release of "abide"


def study_key(name: str) -> str:
    """The comparison key of a study name: lower case, ``-``/``_`` as spaces, no release suffix."""
    key = " ".join(re.sub(r"[-_]+", " ", str(name).lower()).split())
    return _RELEASE.sub("", key) or key


def _coded(values: set[str]) -> bool:
    return bool(values) and all(v.isdigit() for v in values)


def _shared_studies(a: set[str], b: set[str]) -> set[str]:
    keys_b = {study_key(v) for v in b}
    return {v for v in a if study_key(v) in keys_b}


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
        values_a, values_b = (set(c.table[col].astype(str)) - {"", "nan"} for c in (cohort_a, cohort_b))
        if col == "study" and _coded(values_a) != _coded(values_b):
            coded, named = (cohort_a, values_b) if _coded(values_a) else (cohort_b, values_a)
            warnings.warn(
                f"leakage: the study column of {coded.source} holds integer codes (as OpenBHB's "
                f"participants.tsv), which cannot be compared with the study names {_examples(named)}; "
                "check by hand that no study is in both (OpenBHB includes ABIDE I and II), or give the "
                "coded cohort a manifest with study names", stacklevel=2)
            continue
        shared = _shared_studies(values_a, values_b) if col == "study" else values_a & values_b
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
