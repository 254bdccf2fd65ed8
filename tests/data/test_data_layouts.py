"""Round-trips of every layout: HF, DataPort, challenge kit (flat masked rows) and NIfTI manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.masking import apply_mask

from medssl.data import SPLITS, mask_volume, open_cohort, unmask, write_kit_layout
from medssl.data.kit import MASK_FILES
from medssl.errors import DataError

SHAPE = (16, 20, 16)  # the fixtures' shape (conftest.TINY)


def _hf_file(root: Path, pid: str, split: str, modality: str) -> Path:
    name = {"vbm": "preproc-cat12vbm_desc-gm_T1w", "quasiraw": "preproc-quasiraw_T1w"}[modality]
    folder = "train" if split == "train" else "val"
    return root / folder / "derivatives" / f"sub-{pid}" / "ses-1" / f"sub-{pid}_{name}.npy"


@pytest.mark.parametrize("modality", ["vbm", "quasiraw"])
def test_hf_reads_float64_and_float32_files_as_float32_volumes(hf_root: Path, modality: str, tmp_path: Path) -> None:
    """OpenBHB ships float64 arrays, the synthetic generator writes float32: both read as float32."""
    root = shutil.copytree(hf_root, tmp_path / "cohort")
    cohort = open_cohort(root, modality)
    assert cohort.layout == "hf" and cohort.image_shape == SHAPE and len(cohort) == 40
    raw = pd.read_csv(root / "participants.tsv", sep="\t", dtype={"participant_id": str})
    assert list(cohort.table["participant_id"]) == list(raw["participant_id"])
    assert set(cohort.table["split"]) == set(SPLITS)
    for i, dtype in ((0, np.float64), (17, np.float32), (39, np.float64)):
        row = cohort.table.iloc[i]
        path = _hf_file(root, row["participant_id"], row["split"], modality)
        stored = np.load(path)
        assert stored.dtype == np.float32 and stored.shape == (1, 1, *SHAPE)
        stored = stored.astype(dtype)
        np.save(path, stored)
        image = cohort.read(i)
        assert image.dtype == np.float32 and image.shape == (1, *SHAPE)
        np.testing.assert_array_equal(image, stored[0].astype(np.float32))


def test_site_codes_follow_the_contract(hf_root: Path) -> None:
    cohort = open_cohort(hf_root)
    t = cohort.table
    train_sites = sorted(set(t.loc[t["split"] == "train", "site"]), key=int)
    other = sorted(set(t["site"]) - set(train_sites), key=int)
    assert cohort.site_names == train_sites + other
    assert cohort.n_train_sites == len(train_sites) == 3
    assert cohort.unseen_sites == other and len(other) == 1
    for site, code in zip(t["site"], t["site_code"]):
        assert cohort.site_names[code] == site
    # a view keeps the encoding: the external split alone still reports code 3 for its site
    ext = cohort.select("external_test")
    assert set(ext.table["site_code"]) == {3} and ext.site_names == cohort.site_names
    with pytest.raises(DataError, match="unknown split 'test'"):
        cohort.select("test")


def test_dataport_layout_matches_hf(hf_root: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(hf_root / "participants.tsv", sep="\t", dtype={"participant_id": str})
    for folder, rows in (("train", raw[raw.split == "train"]), ("val", raw[raw.split != "train"])):
        (tmp_path / f"{folder}_labels").mkdir()
        rows.to_csv(tmp_path / f"{folder}_labels" / "participants.tsv", sep="\t", index=False)
        for modality in ("vbm", "quasiraw"):
            (tmp_path / f"{folder}_{modality}").mkdir(exist_ok=True)
            for pid, split in zip(rows.participant_id, rows.split):
                src = _hf_file(hf_root, pid, split, modality)
                shutil.copy(src, tmp_path / f"{folder}_{modality}" / src.name)
    for modality in ("vbm", "quasiraw"):
        hf, dp = open_cohort(hf_root, modality), open_cohort(tmp_path, modality)
        assert dp.layout == "dataport"
        dp_index = {pid: i for i, pid in enumerate(dp.table["participant_id"])}
        for i in (0, 25, 39):
            j = dp_index[hf.table.at[i, "participant_id"]]
            assert dp.table.at[j, "split"] == hf.table.at[i, "split"]
            np.testing.assert_array_equal(dp.read(j), hf.read(i))


def test_nifti_manifest_layout_matches_hf(hf_root: Path, nifti_root: Path) -> None:
    """Same seed, two layouts: identical tables and voxels (float32 NIfTI vs float64 npy)."""
    for modality in ("vbm", "quasiraw"):
        hf, nii = open_cohort(hf_root, modality), open_cohort(nifti_root, modality)
        assert nii.layout == "manifest" and nii.image_shape == hf.image_shape
        assert list(nii.table["participant_id"]) == list(hf.table["participant_id"])
        assert list(nii.table["site_code"]) == list(hf.table["site_code"])
        for i in (0, 39):
            np.testing.assert_array_equal(nii.read(i), hf.read(i))


@pytest.fixture(scope="module")
def kit_root(hf_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "kit"
    vbm, quasiraw = open_cohort(hf_root, "vbm"), open_cohort(hf_root, "quasiraw")
    return write_kit_layout(vbm, out, quasiraw=quasiraw)  # masks found in hf_root/resource


def test_kit_files_follow_the_challenge_format(hf_root: Path, kit_root: Path) -> None:
    train = np.load(kit_root / "data" / "train.npy", mmap_mode="r")
    test_tsv = pd.read_csv(kit_root / "data" / "test.tsv", sep="\t")
    masks = {m: nib.load(kit_root / MASK_FILES[m][0]).get_fdata() > MASK_FILES[m][2] for m in MASK_FILES}
    n_vbm, n_q = int(masks["vbm"].sum()), int(masks["quasiraw"].sum())
    assert train.dtype == np.float32 and train.shape[1] == n_vbm + n_q
    # test rows: every internal_test row before the first external_test row, as the kit requires
    splits = list(test_tsv["split"])
    assert splits == sorted(splits, key=["internal_test", "external_test"].index)
    # a row is [vbm[mask] | quasiraw[mask]] exactly as nilearn.masking.apply_mask computes it
    hf_vbm, hf_q = open_cohort(hf_root, "vbm"), open_cohort(hf_root, "quasiraw")
    pid = pd.read_csv(kit_root / "data" / "train.tsv", sep="\t", dtype=str)["participant_id"][3]
    i = int(np.flatnonzero(hf_vbm.table["participant_id"] == pid)[0])
    eye = np.eye(4)
    for (start, stop), cohort, mod in (((0, n_vbm), hf_vbm, "vbm"), ((n_vbm, n_vbm + n_q), hf_q, "quasiraw")):
        expected = apply_mask(nib.Nifti1Image(cohort.read(i)[0], eye),
                              nib.Nifti1Image(masks[mod].astype(np.uint8), eye))
        np.testing.assert_array_equal(train[3, start:stop], expected)


@pytest.mark.parametrize("modality", ["vbm", "quasiraw"])
def test_kit_unmasking_inverts_masking_exactly(hf_root: Path, kit_root: Path, modality: str) -> None:
    hf, kit = open_cohort(hf_root, modality), open_cohort(kit_root, modality)
    assert kit.layout == "kit" and kit.image_shape == hf.image_shape and len(kit) == len(hf)
    mask = nib.load(kit_root / MASK_FILES[modality][0]).get_fdata() > MASK_FILES[modality][2]
    hf_index = {pid: i for i, pid in enumerate(hf.table["participant_id"])}
    for j in range(len(kit)):
        i = hf_index[kit.table.at[j, "participant_id"]]
        assert kit.table.at[j, "split"] == hf.table.at[i, "split"]
        assert kit.table.at[j, "site_code"] == hf.table.at[i, "site_code"]
        image = kit.read(j)
        np.testing.assert_array_equal(image, np.where(mask, hf.read(i), 0.0))
        np.testing.assert_array_equal(unmask(mask_volume(image, mask), mask), image)


def test_kit_masks_from_environment_and_width_check(kit_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    moved = tmp_path / "kit"
    shutil.copytree(kit_root, moved)
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for modality, (name, env, _) in MASK_FILES.items():
        shutil.move(moved / name, mask_dir / name)
    with pytest.raises(DataError, match="no vbm mask.*VBM_MASK"):
        open_cohort(moved)
    for modality, (name, env, _) in MASK_FILES.items():
        monkeypatch.setenv(env, str(mask_dir / name))
    np.testing.assert_array_equal(open_cohort(moved, "quasiraw").read(5), open_cohort(kit_root, "quasiraw").read(5))
    # rows narrower than the masks require: the quasiraw block cannot be found
    train = np.load(moved / "data" / "train.npy")
    np.save(moved / "data" / "train.npy", train[:, : train.shape[1] - 7])
    with pytest.raises(DataError, match="rows are .* wide but the masks need"):
        open_cohort(moved, "quasiraw")


def test_kit_with_masks_synthesised_from_data(hf_root: Path, tmp_path: Path) -> None:
    shutil.copytree(hf_root, tmp_path / "hf", ignore=shutil.ignore_patterns("resource"))
    vbm = open_cohort(tmp_path / "hf", "vbm")
    out = write_kit_layout(vbm, tmp_path / "kit")
    assert not (out / MASK_FILES["quasiraw"][0]).exists()
    kit = open_cohort(out, "vbm")
    mask = nib.load(out / MASK_FILES["vbm"][0]).get_fdata() > 0.05
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(kit.read(0), np.where(mask, vbm.read(0), 0.0))
    with pytest.raises(DataError, match="no quasiraw mask"):
        open_cohort(out, "quasiraw")


def test_unknown_folder_lists_the_expected_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a recognised cohort folder.*participants.tsv"):
        open_cohort(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        open_cohort(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown modality 'xhemi'"):
        open_cohort(tmp_path, "xhemi")


def test_kit_cohort_pickles_without_its_memmaps(kit_root: Path) -> None:
    """DataLoader workers receive the cohort by pickling: the memory maps must not travel."""
    import pickle

    kit = open_cohort(kit_root, "quasiraw")
    before = kit.read(4)
    clone = pickle.loads(pickle.dumps(kit))
    assert len(pickle.dumps(kit)) < 200_000  # the tables and masks, not the 40 x row-width matrix
    np.testing.assert_array_equal(clone.read(4), before)


@pytest.mark.parametrize("removed", ["test.tsv", "test.npy", "train.tsv"])
def test_kit_file_without_its_pair_is_refused(kit_root: Path, tmp_path: Path, removed: str) -> None:
    """A test.npy without test.tsv used to drop the test split silently."""
    moved = tmp_path / "kit"
    shutil.copytree(kit_root, moved)
    (moved / "data" / removed).unlink()
    kept = removed.replace(".tsv", ".npy") if removed.endswith(".tsv") else removed.replace(".npy", ".tsv")
    with pytest.raises(DataError, match=f"data/{kept} has no {removed} beside it"):
        open_cohort(moved)


def test_unreadable_kit_tables_name_the_file(kit_root: Path, tmp_path: Path) -> None:
    moved = tmp_path / "kit"
    shutil.copytree(kit_root, moved)
    original = (moved / "data" / "train.tsv").read_text()
    lines = original.splitlines()
    (moved / "data" / "train.tsv").write_text("\n".join(lines[:3] + [lines[3] + "\textra\tcols"] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"data/train.tsv: cannot read the kit table .*Expected"):
        open_cohort(moved)
    (moved / "data" / "train.tsv").write_bytes(b"participant_id\tage\tsite\n\xff\xfe\x00bad\t1\t2\n")
    with pytest.raises(DataError, match=r"data/train.tsv: cannot read the kit table"):
        open_cohort(moved)
    (moved / "data" / "train.tsv").write_text(original)
    (moved / "data" / "test.tsv").unlink()
    (moved / "data" / "test.tsv").mkdir()
    with pytest.raises(DataError, match=r"data/test.tsv: cannot read the kit table"):
        open_cohort(moved)
