"""Kit files written as the RAMP kit writes them open and validate; ``validate`` refuses unlabelled training scans.

The kit's ``download_data.py --test`` writes ``data/{train,test}.npy`` (float32 rows of 3,659,572 columns) and
``data/{train,test}.tsv`` with exactly the columns ``age``, ``site``, ``split`` (integers, no participant id);
its train split is named ``internal_train``, its test splits ``internal_test`` then ``external_test`` (external
site 3). ``write_kit_test_files`` below reproduces that format from the description, without the kit's code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.data import open_cohort, validate_cohort
from medssl.data.kit import MASK_FILES

FULL_WIDTH = 3659572
REAL = {"vbm": ((121, 145, 121), 519945), "quasiraw": ((182, 218, 182), 1827095)}


def _mask(shape: tuple[int, int, int], count: int) -> np.ndarray:
    """A centred blob of exactly ``count`` voxels: the ``count`` voxels nearest the grid centre (stable order)."""
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, np.float32) - 1) / 2
    dist = sum(((grid[a] - centre[a]) / shape[a]) ** 2 for a in range(3)).ravel()
    keep = np.zeros(dist.size, bool)
    keep[np.argsort(dist, kind="stable")[:count]] = True
    return keep.reshape(shape)


def write_kit_test_files(root: Path, masks: dict[str, np.ndarray], width: int, n_train: int, n_test: int,
                         seed: int = 0) -> Path:
    """``root/data/{train,test}.{npy,tsv}`` in the format of the kit's ``download_data.py --test`` + the masks.

    Rows are uniform random float32 (as the kit's); the tsv has columns age, site, split only, integers;
    train rows are ``internal_train`` with sites 0/1, test rows ``internal_test`` (sites 0/1) then
    ``external_test`` (site 3), ``n_test`` of each. The masks are written under the kit's file names.
    """
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True)
    tpm = np.where(masks["vbm"], 0.5, 0.04).astype(np.float32)  # the kit thresholds the TPM at > 0.05
    nib.save(nib.Nifti1Image(tpm, np.eye(4)), root / MASK_FILES["vbm"][0])
    nib.save(nib.Nifti1Image(masks["quasiraw"].astype(np.int16) * 7, np.eye(4)), root / MASK_FILES["quasiraw"][0])
    for name, parts in (("train", [("internal_train", n_train)]),
                        ("test", [("internal_test", n_test), ("external_test", n_test)])):
        ages, sites, splits = [], [], []
        for split, n in parts:
            ages += rng.integers(5, 80, n).tolist()
            sites += [3] * n if split == "external_test" else rng.integers(0, 2, n).tolist()
            splits += [split] * n
        rows = np.lib.format.open_memmap(root / "data" / f"{name}.npy", mode="w+", dtype=np.float32,
                                         shape=(len(ages), width))
        for i in range(len(ages)):  # one row at a time: a full-width row is 14.6 MB
            rows[i] = rng.random(width, dtype=np.float32)
        rows.flush()
        del rows
        table = pd.DataFrame(np.c_[ages, sites], columns=("age", "site"))
        table["split"] = splits
        table.to_csv(root / "data" / f"{name}.tsv", sep="\t", index=False)
    return root


def test_kit_test_files_open_with_the_kits_split_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    masks = {"vbm": _mask((9, 11, 9), 300), "quasiraw": _mask((10, 12, 10), 500)}
    root = write_kit_test_files(tmp_path / "kit", masks, width=300 + 500 + 7, n_train=12, n_test=3)
    assert pd.read_csv(root / "data" / "train.tsv", sep="\t").columns.tolist() == ["age", "site", "split"]
    cohort = open_cohort(root)
    assert cohort.table["split"].tolist() == ["train"] * 12 + ["internal_test"] * 3 + ["external_test"] * 3
    assert cohort.unseen_sites == ["3"]
    rows = np.load(root / "data" / "train.npy")
    np.testing.assert_array_equal(cohort.read(4)[0][masks["vbm"]], rows[4, :300])  # vbm block, un-masked
    quasiraw = open_cohort(root, "quasiraw")
    np.testing.assert_array_equal(quasiraw.read(13)[0][masks["quasiraw"]],
                                  np.load(root / "data" / "test.npy")[1, 300:800])
    assert main(["validate", str(root)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ok")


def test_full_width_kit_rows_with_the_real_masks_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The kit's own widths: 3,659,572 columns, 519,945 vbm and 1,827,095 quasi-raw voxels (a few rows)."""
    masks = {m: _mask(shape, count) for m, (shape, count) in REAL.items()}
    root = write_kit_test_files(tmp_path / "kit", masks, width=FULL_WIDTH, n_train=2, n_test=1)
    cohort = open_cohort(root)
    assert cohort.image_shape == (121, 145, 121) and len(cohort) == 4
    assert list(cohort.table["split"]) == ["train", "train", "internal_test", "external_test"]
    validate_cohort(cohort)
    assert main(["validate", str(root), "--modality", "quasiraw"]) == 0
    assert "(1, 182, 218, 182)" not in capsys.readouterr().out  # the summary names (D, H, W) only


def test_validate_refuses_training_scans_without_age(hf_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(shutil.copytree(hf_root, tmp_path / "cohort"))
    table = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    table.drop(columns="age").to_csv(root / "participants.tsv", sep="\t", index=False)
    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{root / 'participants.tsv'}" in err and "'age'" in err and "--allow-missing" in err
    n_train = int((table["split"] == "train").sum())
    assert f"{n_train} of {n_train} training scans" in err
    assert main(["validate", str(root), "--allow-missing", "--headers-only"]) == 0
    out = capsys.readouterr().out
    assert "--allow-missing" in out and "ok" in out


def test_validate_refuses_training_scans_without_site(nifti_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "manifest.csv"
    table = pd.read_csv(nifti_root / "manifest_vbm.csv", dtype=str, keep_default_na=False)
    table.drop(columns="site").to_csv(manifest, index=False)
    assert main(["validate", str(manifest), "--data-root", str(nifti_root), "--headers-only"]) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and "'site'" in err and "'age'" not in err
    assert main(["validate", str(manifest), "--data-root", str(nifti_root), "--allow-missing"]) == 0


def test_validate_accepts_a_labelled_cohort_with_unlabelled_test_rows(hf_root: Path, tmp_path: Path) -> None:
    """Only training scans must carry age and site: a missing test age is reported, not refused."""
    root = Path(shutil.copytree(hf_root, tmp_path / "cohort"))
    table = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    table.loc[table["split"] == "external_test", "age"] = ""
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    assert main(["validate", str(root), "--headers-only"]) == 0
