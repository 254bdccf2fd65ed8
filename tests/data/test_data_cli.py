"""The data CLI (synth, manifest openbhb/ukbiobank/bids, validate, check-leakage) and summaries."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.data import open_cohort, plot_cohort, summarize_cohort


def test_synth_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kit"
    args = ["synth", str(out), "--n-subjects", "14", "--n-sites", "2", "--n-external-sites", "1",
            "--shape", "10", "12", "10", "--seed", "1", "--layout", "kit"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["validate", str(out), "--modality", "quasiraw"]) == 0
    printed = capsys.readouterr().out
    assert "external_test" in printed and "sites unseen in train: 2" in printed and "ok" in printed
    np.save(out / "data" / "test.npy", np.full((3, 5), np.nan, np.float32))
    assert main(["validate", str(out)]) == 2
    assert "does not match" in capsys.readouterr().err


def test_manifest_openbhb_round_trip(hf_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "openbhb.csv"
    assert main(["manifest", "openbhb", str(hf_root), "--out", str(out), "--modality", "quasiraw"]) == 0
    assert f"open it with data_root={hf_root}" in capsys.readouterr().out
    manifest = pd.read_csv(out, dtype=str)
    assert list(manifest.columns[:2]) == ["participant_id", "path"] and not manifest["path"].str.startswith("/").any()
    via_manifest, direct = open_cohort(out, data_root=hf_root), open_cohort(hf_root, "quasiraw")
    assert list(via_manifest.table["site_code"]) == list(direct.table["site_code"])
    np.testing.assert_array_equal(via_manifest.read(11), direct.read(11))
    assert main(["manifest", "openbhb", str(hf_root), "--out", str(out)]) == 2  # exists
    inside = hf_root.parent / "inside.csv"
    assert main(["manifest", "openbhb", str(hf_root), "--out", str(inside)]) == 0
    assert len(open_cohort(inside)) == 40  # paths relative to the manifest's folder, no data_root
    inside.unlink()


def _nii(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(seed).random((5, 6, 5)).astype(np.float32), np.eye(4)), path)


def test_manifest_ukbiobank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ukb"
    for k, eid in enumerate(["1000001", "1000002"]):
        _nii(root / f"{eid}_20252_2_0" / "T1" / "T1_brain_to_MNI.nii.gz", k)
    _nii(root / "1000002_20252_3_0" / "T1" / "T1_brain_to_MNI.nii.gz", 7)  # repeat imaging visit
    fields = pd.DataFrame({"eid": ["1000001", "1000002", "1000003"], "31-0.0": ["0", "1", "1"],
                           "21003-2.0": ["63", "70", "55"], "21003-3.0": ["", "72", ""],
                           "54-2.0": ["11025", "11027", "11026"], "54-3.0": ["", "11028", ""]})  # fmt: skip
    fields.to_csv(tmp_path / "fields.csv", index=False)
    out = tmp_path / "ukb.csv"
    assert main(["manifest", "ukbiobank", str(root), "--fields", str(tmp_path / "fields.csv"), "--out", str(out)]) == 0
    assert "data_root" not in capsys.readouterr().out  # the images are below the manifest's folder
    cohort = open_cohort(out)
    t = cohort.table.set_index(["participant_id", "session"])
    assert t.loc[("1000001", "2_0"), ["age", "sex", "site"]].tolist() == [63.0, "female", "11025"]
    assert t.loc[("1000002", "3_0"), ["age", "sex", "site"]].tolist() == [72.0, "male", "11028"]
    assert set(cohort.table["study"]) == {"ukbiobank"} and len(cohort) == 3
    fields.iloc[:1].to_csv(tmp_path / "fields.csv", index=False)
    assert main(["manifest", "ukbiobank", str(root), "--fields", str(tmp_path / "fields.csv"),
                 "--out", str(tmp_path / "u2.csv")]) == 2  # fmt: skip
    assert "image without a row" in capsys.readouterr().err and not (tmp_path / "u2.csv").exists()


def test_manifest_bids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bids"
    _nii(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", 0)
    _nii(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz", 1)
    _nii(root / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_T1w.nii.gz", 2)
    participants = root / "participants.tsv"
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 41], "sex": ["F", "M"],
                  "group": ["asd", "control"]}).to_csv(participants, sep="\t", index=False)  # fmt: skip
    out = root / "manifest.csv"
    assert main(["manifest", "bids", str(root), "--participants", str(participants), "--out", str(out)]) == 0
    t = open_cohort(out).table
    assert sorted(zip(t["participant_id"], t["session"], t["diagnosis"], t["study"])) == [
        ("01", "", "asd", "bids"), ("02", "a", "control", "bids"), ("02", "b", "control", "bids")]
    _nii(root / "sub-03" / "anat" / "sub-03_T1w.nii.gz", 3)
    assert main(["manifest", "bids", str(root), "--participants", str(participants), "--out", str(out),
                 "--overwrite"]) == 2
    assert "sub-03_T1w.nii.gz: image without a row" in capsys.readouterr().err


def test_check_leakage_cli(hf_root: Path, nifti_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-leakage", str(hf_root), str(nifti_root)]) == 2
    assert "40 participant_id value(s) in both" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="leakage"):
        assert main(["check-leakage", str(hf_root), str(nifti_root), "--warn"]) == 0


def test_summary_matches_an_independent_count_and_plot_is_a_png(hf_root: Path, tmp_path: Path) -> None:
    cohort = open_cohort(hf_root)
    summary = summarize_cohort(cohort)
    raw = pd.read_csv(hf_root / "participants.tsv", sep="\t")
    for split, group in raw.groupby("split"):
        row = summary.loc[split]
        assert row["scans"] == len(group) and row["sites"] == group["site"].nunique()
        assert row["age_min"] == round(group["age"].min(), 2) and row["male"] == (group["sex"] == "male").sum()
    assert summary.loc["external_test", "unseen_sites"] == 1 and summary.loc["train", "unseen_sites"] == 0
    assert summary.loc["all", "scans"] == 40 and summary.loc["all", "diagnosis"] == "control: 40"
    path = plot_cohort(cohort, tmp_path / "cohort.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_manifest_bids_refuses_sites_missing_for_some_participants(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """BIDS writes ``n/a`` for an unknown site: it is missing, not a site called "n/a"."""
    root = tmp_path / "bids"
    for i in range(3):
        _nii(root / f"sub-0{i}" / "anat" / f"sub-0{i}_T1w.nii.gz", i)
    participants = root / "participants.tsv"
    pd.DataFrame({"participant_id": ["sub-00", "sub-01", "sub-02"], "site": ["A", "n/a", "B"]}).to_csv(
        participants, sep="\t", index=False)  # fmt: skip
    out = root / "manifest.csv"
    assert main(["manifest", "bids", str(root), "--participants", str(participants), "--out", str(out)]) == 2
    assert r"participants.tsv: site is empty in 1 of 3 rows (rows 2 (01))" in capsys.readouterr().err
    assert not out.exists()
    pd.DataFrame({"participant_id": ["sub-00", "sub-01", "sub-02"], "site": ["n/a"] * 3}).to_csv(
        participants, sep="\t", index=False)  # fmt: skip
    assert main(["manifest", "bids", str(root), "--participants", str(participants), "--out", str(out)]) == 0
    assert open_cohort(out).site_names == [""]  # no site information at all: one unnamed site
