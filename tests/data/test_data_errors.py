"""Bad input gets a DataError naming the file/row and the fix; manifests are validated."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medssl.data import open_cohort, validate_cohort
from medssl.errors import DataError


def _nifti(path: Path, shape: tuple[int, ...] = (6, 7, 5), value: float | None = None, seed: int = 0) -> Path:
    if value is None:
        data = np.random.default_rng(seed).random(shape).astype(np.float32)
    else:
        data = np.full(shape, value, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.fixture()
def manifest_dir(tmp_path: Path) -> Path:
    """Three NIfTI scans and a valid manifest.csv next to them."""
    for i in range(3):
        _nifti(tmp_path / "img" / f"s{i}.nii.gz", seed=i)
    pd.DataFrame({
        "participant_id": ["a", "b", "c"], "path": [f"img/s{i}.nii.gz" for i in range(3)],
        "age": [20.5, "", 70], "sex": ["M", "F", ""], "site": ["x", "y", "x"],
        "split": ["train", "train", "internal_test"], "diagnosis": ["control"] * 3,
    }).to_csv(tmp_path / "manifest.csv", index=False)  # fmt: skip
    return tmp_path


def _edit(manifest_dir: Path, **changes: object) -> Path:
    table = pd.read_csv(manifest_dir / "manifest.csv", dtype=str, keep_default_na=False)
    for key, value in changes.items():
        col, row = key.rsplit("_", 1)
        table.loc[int(row), col] = value
    table.to_csv(manifest_dir / "manifest.csv", index=False)
    return manifest_dir / "manifest.csv"


def test_valid_manifest_is_read_and_normalised(manifest_dir: Path) -> None:
    cohort = open_cohort(manifest_dir / "manifest.csv")
    t = cohort.table
    assert list(t["sex"]) == ["male", "female", ""]
    assert np.isnan(t.at[1, "age"]) and t.at[2, "age"] == 70.0
    assert cohort.image_shape == (6, 7, 5)
    expected = np.asarray(nib.load(manifest_dir / "img" / "s1.nii.gz").dataobj, dtype=np.float32)
    np.testing.assert_array_equal(cohort.read(1)[0], expected)
    summary = validate_cohort(cohort)
    assert summary.loc["all", "missing_age"] == 1 and summary.loc["all", "missing_sex"] == 1


def test_data_root_overrides_the_manifest_folder(manifest_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("m") / "manifest.csv"
    shutil.copy(manifest_dir / "manifest.csv", elsewhere)
    with pytest.raises(DataError, match="row 1 \\(a\\): image .* does not exist"):
        open_cohort(elsewhere)
    assert len(open_cohort(elsewhere, data_root=manifest_dir)) == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"path_1": "../outside/s1.nii.gz"}, r"row 2 \(b\): path '../outside/s1.nii.gz' escapes the data root"),
        ({"path_1": "/etc/passwd.nii"}, r"row 2 \(b\): path '/etc/passwd.nii' escapes the data root"),
        ({"path_2": "img/missing.nii.gz"}, r"row 3 \(c\): image .*missing.nii.gz does not exist"),
        ({"path_0": "img/notes.txt"}, r"row 1 \(a\): notes.txt is not an image"),
        ({"participant_id_2": "a"}, r"duplicate participant_id \['a'\] \(rows \[1, 3\]\)"),
        ({"participant_id_1": ""}, r"row 2 has an empty participant_id"),
        ({"split_2": "validation"}, r"row 3 \(c\) has unknown split 'validation'; use one of train, internal_test"),
        ({"sex_0": "X"}, r"row 1 \(a\) has sex 'X'"),
        ({"age_0": "twenty"}, r"row 1 \(a\) has non-numeric age 'twenty'"),
    ],
)
def test_manifest_errors_name_the_row_and_the_fix(manifest_dir: Path, changes: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_cohort(_edit(manifest_dir, **changes))


def test_missing_required_column(manifest_dir: Path) -> None:
    table = pd.read_csv(manifest_dir / "manifest.csv").drop(columns="path")
    table.to_csv(manifest_dir / "manifest.csv", index=False)
    with pytest.raises(DataError, match="missing required column\\(s\\) path"):
        open_cohort(manifest_dir / "manifest.csv")


def test_inconsistent_shapes(manifest_dir: Path) -> None:
    _nifti(manifest_dir / "img" / "s2.nii.gz", shape=(6, 7, 6))
    with pytest.raises(DataError, match="s2.nii.gz: shape \\(6, 7, 6\\) differs from \\(6, 7, 5\\)"):
        open_cohort(manifest_dir / "manifest.csv")


def test_nan_voxels_truncated_and_constant_images(manifest_dir: Path) -> None:
    data = np.ones((6, 7, 5), np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), manifest_dir / "img" / "s0.nii.gz")
    raw = (manifest_dir / "img" / "s1.nii.gz").read_bytes()
    (manifest_dir / "img" / "s1.nii.gz").write_bytes(raw[:-100])  # header intact, data cut
    cohort = open_cohort(manifest_dir / "manifest.csv")  # headers are fine: lazily detected
    with pytest.raises(DataError, match="s0.nii.gz: 1 NaN/Inf voxels"):
        cohort.read(0)
    with pytest.raises(DataError, match="s1.nii.gz: cannot read the image data .*truncated or corrupt"):
        cohort.read(1)
    with pytest.raises(DataError, match="2 problem\\(s\\): .*s0.nii.gz: 1 NaN.*s1.nii.gz: cannot read"):
        validate_cohort(cohort)


def test_corrupt_and_truncated_npy(tmp_path: Path) -> None:
    for i in range(2):
        np.save(tmp_path / f"s{i}.npy", np.ones((1, 1, 4, 5, 6)))
    pd.DataFrame({"participant_id": ["a", "b"], "path": ["s0.npy", "s1.npy"]}).to_csv(tmp_path / "m.csv", index=False)
    raw = (tmp_path / "s1.npy").read_bytes()
    (tmp_path / "s1.npy").write_bytes(raw[:-40])
    with pytest.raises(DataError, match="s1.npy: not a readable .npy array .*truncated or corrupt"):
        open_cohort(tmp_path / "m.csv")
    (tmp_path / "s1.npy").write_bytes(b"not an array at all")
    with pytest.raises(DataError, match="s1.npy: not a readable .npy array"):
        open_cohort(tmp_path / "m.csv")
    np.save(tmp_path / "s1.npy", np.ones((2, 4, 5, 6)))
    with pytest.raises(DataError, match="s1.npy: array of shape \\(2, 4, 5, 6\\) is not one 3D volume"):
        open_cohort(tmp_path / "m.csv")


def test_hf_row_without_image_and_image_without_row(hf_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "hf"
    shutil.copytree(hf_root, root)
    table = pd.read_csv(root / "participants.tsv", sep="\t", dtype={"participant_id": str})
    pid = table.at[4, "participant_id"]
    for path in root.glob(f"*/derivatives/sub-{pid}/ses-1/*cat12vbm*"):
        path.unlink()
    with pytest.raises(DataError, match=f"row 5 \\(participant {pid}\\) has no image"):
        open_cohort(root)
    assert len(open_cohort(root, "quasiraw")) == 40  # the other modality is complete
    table.drop(index=4).to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=f"sub-{pid}_preproc-quasiraw_T1w.npy: image without a row"):
        open_cohort(root, "quasiraw")
    dup = pd.concat([table, table.iloc[[7]]])
    dup.to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="duplicate participant_id"):
        open_cohort(root, "quasiraw")
    table.drop(columns="split").to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="missing column 'split'"):
        open_cohort(root, "quasiraw")


def test_relative_manifest_name_gives_absolute_paths(manifest_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opened as ``manifest.csv`` from its folder: the base is made absolute, so absolute paths inside
    it are accepted and ``path`` still works after a chdir; a symlinked data root is not resolved."""
    table = pd.read_csv(manifest_dir / "manifest.csv", dtype=str, keep_default_na=False)
    table.loc[0, "path"] = str(manifest_dir / "img" / "s0.nii.gz")
    table.to_csv(manifest_dir / "manifest.csv", index=False)
    monkeypatch.chdir(manifest_dir)
    cohort = open_cohort("manifest.csv")
    assert cohort.table["path"].tolist() == [str(manifest_dir / "img" / f"s{i}.nii.gz") for i in range(3)]
    assert len(open_cohort(manifest_dir / "manifest.csv", data_root=".")) == 3
    link = manifest_dir.parent / "link"
    link.symlink_to(manifest_dir)
    table.loc[0, "path"] = str(link / "img" / "s0.nii.gz")
    table.to_csv(manifest_dir / "manifest.csv", index=False)
    linked = open_cohort("manifest.csv", data_root="../link")
    assert linked.table["path"].tolist() == [str(link / "img" / f"s{i}.nii.gz") for i in range(3)]
    monkeypatch.chdir(manifest_dir.parent)
    np.testing.assert_array_equal(cohort.read(2)[0], np.asarray(nib.load(manifest_dir / "img" / "s2.nii.gz").dataobj))
