"""Table normalisation rules (data audit): float-spelled ids/sites, missing tokens, blank splits and
sites, numeric site names."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medssl.data import check_leakage, check_split_leakage, open_cohort
from medssl.data.cohort import Cohort, PathSource, encode_sites, standardize_table, text_column
from medssl.errors import DataError, LeakageError


def _std(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return standardize_table(pd.DataFrame({"participant_id": [str(i) for i in range(n)], **columns}), "t.tsv")


def _cohort(rows: dict, source: str) -> Cohort:
    return Cohort(standardize_table(pd.DataFrame(rows), source), PathSource(), (4, 4, 4), source)


def test_integral_float_text_is_the_integer_and_other_text_is_kept() -> None:
    raw = pd.Series(["175795100228.0", "36.00", "-3.0", 12.0, "12.5", "007", "1.0e3", "36_2", " 4.0 "])
    assert text_column(raw).tolist() == ["175795100228", "36", "-3", "12", "12.5", "007", "1.0e3", "36_2", "4"]


def test_float_spelled_ids_meet_their_integer_spelling() -> None:
    ints = _cohort({"participant_id": ["175795100228", "2"], "site": ["36", "1"]}, "a")
    floats = _cohort({"participant_id": ["175795100228.0", "9"], "site": ["36.0", "1"]}, "b")
    with pytest.raises(LeakageError, match="175795100228"):
        check_leakage(ints, floats, on=("participant_id",))
    both = _cohort({"participant_id": ["5", "5.0"], "split": ["train", "internal_test"], "site": ["36", "36.0"]}, "c")
    assert both.site_names == ["36"]  # one class, not "36" and "36.0"
    with pytest.raises(LeakageError, match="5"):
        check_split_leakage(both)


@pytest.mark.parametrize("token", ["", "n/a", "N/A", "NaN", "none", "NA"])
def test_missing_tokens_are_empty_in_every_text_column(token: str) -> None:
    t = _std(site=[token] * 2, diagnosis=[token, "scz"], study=[token, "x"], sex=[token, "M"])
    assert t["site"].tolist() == ["", ""] and t["diagnosis"].tolist() == ["", "scz"]
    assert t["study"].tolist() == ["", "x"] and t["sex"].tolist() == ["", "male"]


@pytest.mark.parametrize("token", ["", "n/a", "nan"])
def test_a_site_missing_in_some_rows_only_is_refused(token: str) -> None:
    with pytest.raises(DataError, match=r"t.tsv: site is empty in 2 of 4 rows \(rows 2 \(1\), 4 \(3\)\)"):
        _std(site=["A", token, "B", token])
    assert _std(site=[token] * 3)["site"].tolist() == ["", "", ""]  # no site information at all: allowed
    assert _std(age=[1, 2])["site"].tolist() == ["", ""]  # no site column: allowed


def test_a_blank_split_among_filled_ones_is_refused() -> None:
    with pytest.raises(DataError, match=r"t.tsv: split is empty in 1 of 3 rows \(rows 3 \(2\)\)"):
        _std(split=["train", "external_test", ""])
    with pytest.raises(DataError, match="split is empty in 1 of 2 rows"):
        _std(split=["internal_test", "n/a"])
    assert _std(split=["", ""])["split"].tolist() == ["train", "train"]  # every cell empty = train
    assert _std(age=[1, 2])["split"].tolist() == ["train", "train"]  # absent column = train


def test_blank_split_in_a_manifest_names_the_file(tmp_path: Path) -> None:
    for i in range(2):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / f"s{i}.nii.gz")
    pd.DataFrame({"participant_id": ["a", "b"], "path": ["s0.nii.gz", "s1.nii.gz"],
                  "split": ["external_test", ""]}).to_csv(tmp_path / "m.csv", index=False)  # fmt: skip
    with pytest.raises(DataError, match=r"m.csv: split is empty in 1 of 2 rows \(rows 2 \(b\)\)"):
        open_cohort(tmp_path / "m.csv")


def test_numeric_site_names_sort_by_value_and_others_by_name() -> None:
    sites = ["36_2", "10", "nan", "2", "36_10", "1e1", "+3", "2.5", "b", "inf", "1_000"]
    table = pd.DataFrame({"site": sites, "split": "train"})
    expected = ["2", "2.5", "+3", "10", "1_000", "1e1", "36_10", "36_2", "b", "inf", "nan"]
    assert encode_sites(table) == expected
