"""Leakage guards across cohorts and across the splits of one cohort."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medssl.data import check_leakage, check_split_leakage, open_cohort
from medssl.data.cohort import Cohort, PathSource, standardize_table
from medssl.errors import LeakageError


def _cohort(rows: list[dict], source: str) -> Cohort:
    return Cohort(standardize_table(pd.DataFrame(rows), source), PathSource(), (4, 4, 4), source)


A = [{"participant_id": "1", "study": "abide", "site": "s1"}, {"participant_id": "2", "study": "ixi", "site": "s2"}]
B = [{"participant_id": "3", "study": "abide", "site": "s9"}, {"participant_id": "2", "study": "hcp", "site": "s9"}]
C = [{"participant_id": "9", "study": "ukb", "site": "s1"}]


def test_shared_participants_and_studies_are_refused() -> None:
    with pytest.raises(LeakageError,
                       match=r"1 participant_id value\(s\) in both pre and down: 2;.*1 study value\(s\) .*abide"):
        check_leakage(_cohort(A, "pre"), _cohort(B, "down"))
    with pytest.raises(LeakageError, match="study"):
        check_leakage(_cohort(A, "pre"), _cohort(B, "down"), on=("study",))
    assert check_leakage(_cohort(A, "pre"), _cohort(C, "down")) == []


@pytest.mark.parametrize(("a", "b"), [("ABIDE II", "abide"), ("abide_1", "ABIDE-II"), ("Abide", "ABIDE 2"),
                                     ("MPI-Leipzig", "mpi_leipzig")])
def test_study_names_meet_across_spellings(a: str, b: str) -> None:
    pre = _cohort([{"participant_id": "1", "study": a, "site": "s"}], "pre")
    down = _cohort([{"participant_id": "2", "study": b, "site": "s"}], "down")
    with pytest.raises(LeakageError, match=f"1 study value.*{a}"):
        check_leakage(pre, down)


def test_different_studies_with_similar_names_pass() -> None:
    pre = _cohort([{"participant_id": "1", "study": "ABIDE", "site": "s"}], "pre")
    down = _cohort([{"participant_id": "2", "study": "ABIDEX", "site": "s"}], "down")
    assert check_leakage(pre, down) == []


def test_coded_studies_warn_instead_of_passing_silently() -> None:
    coded = _cohort([{"participant_id": f"sub-{i}", "study": str(i % 3), "site": "s"} for i in range(6)], "openbhb")
    with pytest.warns(UserWarning, match="integer codes .* cannot be compared with the study names abide"):
        assert check_leakage(coded, _cohort(B, "down")) == []
    both_coded = _cohort([{"participant_id": "99", "study": "1", "site": "s"}], "other")
    with pytest.raises(LeakageError, match="1 study value"):  # codes against codes: compared as they are
        check_leakage(coded, both_coded)


def test_warn_mode_returns_the_problems() -> None:
    with pytest.warns(UserWarning, match="leakage: 1 participant_id"):
        problems = check_leakage(_cohort(A, "pre"), _cohort(B, "down"), on=("participant_id",), mode="warn")
    assert len(problems) == 1
    with pytest.raises(ValueError, match="mode must be"):
        check_leakage(_cohort(A, "pre"), _cohort(C, "down"), mode="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="column 'scanner' not in the table"):
        check_leakage(_cohort(A, "pre"), _cohort(C, "down"), on=("scanner",))


def test_split_leakage_within_a_cohort() -> None:
    rows = [
        {"participant_id": "1", "site": "a", "split": "train"},
        {"participant_id": "1", "site": "a", "split": "internal_test", "session": "2"},
        {"participant_id": "2", "site": "b", "split": "train"},
        {"participant_id": "3", "site": "b", "split": "external_test"},
    ]
    with pytest.raises(LeakageError,
                       match=r"1 participant\(s\) of c in more than one split: 1;.*external_test site\(s\) b"):
        check_split_leakage(_cohort(rows, "c"))
    assert check_split_leakage(_cohort(rows[2:3] + [{**rows[3], "site": "z"}], "c")) == []


def test_synthetic_cohorts_are_clean(hf_root: Path, nifti_root: Path) -> None:
    cohort = open_cohort(hf_root)
    assert check_split_leakage(cohort) == []
    with pytest.raises(LeakageError, match="40 participant_id value"):
        check_leakage(cohort, open_cohort(nifti_root), on=("participant_id",))
