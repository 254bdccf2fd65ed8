"""NIfTI images are read in RAS+ orientation; shapes and voxel sizes are judged there, at open time."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medssl.data import open_cohort
from medssl.data.images import check_grid, image_grid, read_image
from medssl.errors import DataError

RAS = np.random.default_rng(0).random((8, 10, 12)).astype(np.float32)


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _manifest(folder: Path, names: list[str]) -> Path:
    pd.DataFrame({"participant_id": [f"p{i}" for i in range(len(names))], "path": names}).to_csv(
        folder / "manifest.csv", index=False
    )
    return folder / "manifest.csv"


def _las(folder: Path, data: np.ndarray = RAS, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    """The same brain stored with x flipped: voxel i holds RAS voxel n - 1 - i; x = -z_x * i + shift."""
    affine = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    affine[0, 3] = zooms[0] * (data.shape[0] - 1)
    return _save(folder / "las.nii.gz", data[::-1].copy(), affine)


def _permuted(folder: Path, zooms: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """RAS stored as (z, x, y): stored axis 0 is RAS z, axis 1 is x, axis 2 is y (zooms in RAS order)."""
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = zooms[2], zooms[0], zooms[1], 1.0
    return _save(folder / "zxy.nii.gz", RAS.transpose(2, 0, 1).copy(), affine)


def test_las_copy_reads_identical_to_ras(tmp_path: Path) -> None:
    ras, las = _save(tmp_path / "ras.nii.gz", RAS, np.eye(4)), _las(tmp_path)
    assert not np.array_equal(np.asarray(nib.load(las).dataobj), RAS)  # stored flipped
    cohort = open_cohort(_manifest(tmp_path, [ras.name, las.name]))
    assert cohort.image_shape == RAS.shape
    np.testing.assert_array_equal(cohort.read(0)[0], RAS)
    np.testing.assert_array_equal(cohort.read(1)[0], RAS)
    assert cohort.read(1).dtype == np.float32 and cohort.read(1).flags.c_contiguous


def test_permuted_axes_read_and_judged_in_ras_shape(tmp_path: Path) -> None:
    zxy = _permuted(tmp_path)
    assert nib.load(zxy).shape == (12, 8, 10)
    assert image_grid(zxy) == (RAS.shape, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(read_image(zxy)[0], RAS)
    ras = _save(tmp_path / "ras.nii.gz", RAS, np.eye(4))
    cohort = open_cohort(_manifest(tmp_path, [ras.name, zxy.name]))  # same RAS shape: accepted
    assert cohort.image_shape == RAS.shape == cohort.read(1).shape[1:]
    # an RAS image with the permuted file's *stored* shape is a different grid
    _save(tmp_path / "stored.nii.gz", RAS.transpose(2, 0, 1).copy(), np.eye(4))
    with pytest.raises(DataError, match=r"stored\.nii\.gz: shape \(12, 8, 10\) differs from \(8, 10, 12\)"):
        open_cohort(_manifest(tmp_path, [zxy.name, "stored.nii.gz"]))


@pytest.mark.parametrize("seed", range(4))
def test_grid_and_data_match_nibabel_canonical(tmp_path: Path, seed: int) -> None:
    """Random axis permutation, flips, anisotropic voxels, a small rotation and a 4D singleton axis."""
    rng = np.random.default_rng(seed)
    perm, signs = rng.permutation(3), rng.choice([-1.0, 1.0], 3)
    linear = np.zeros((3, 3))
    linear[perm, np.arange(3)] = signs * rng.uniform(0.8, 2.5, 3)
    angle = rng.uniform(-0.2, 0.2)  # radians, well below 45 degrees: the closest axes do not change
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rot @ linear, rng.normal(size=3) * 50
    data = rng.random((7, 9, 11, 1) if seed % 2 else (7, 9, 11)).astype(np.float32)
    path = _save(tmp_path / "x.nii", data, affine)
    canonical = nib.as_closest_canonical(nib.load(path))
    shape, zooms = image_grid(path)
    assert shape == canonical.shape[:3]
    np.testing.assert_allclose(zooms, canonical.header.get_zooms()[:3], rtol=1e-6)
    expected = canonical.get_fdata(dtype=np.float32).reshape(1, *shape)
    np.testing.assert_array_equal(read_image(path), expected)


def test_mixed_voxel_sizes_name_the_file(tmp_path: Path) -> None:
    names = [_save(tmp_path / f"s{i}.nii.gz", RAS, np.eye(4)).name for i in range(2)]
    _save(tmp_path / "fine.nii.gz", RAS, np.diag([1.0005, 1.0, 1.0, 1.0]))  # within 1e-3 mm
    assert len(open_cohort(_manifest(tmp_path, [*names, "fine.nii.gz"]))) == 3
    _save(tmp_path / "2mm.nii.gz", RAS, np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(DataError) as err:
        open_cohort(_manifest(tmp_path, [*names, "2mm.nii.gz"]))
    message = str(err.value)
    assert "2mm.nii.gz: voxel size 2x2x2 mm differs from 1x1x1 mm of" in message
    assert "s0.nii.gz" in message and "(row 3)" in message and "resample" in message


def test_voxel_sizes_compared_after_reorientation(tmp_path: Path) -> None:
    """(1, 1, 2) mm in RAS: the permuted file stores the 2 mm axis first and agrees; a 2 mm x does not."""
    ras = _save(tmp_path / "ras.nii.gz", RAS, np.diag([1.0, 1.0, 2.0, 1.0]))
    zxy = _permuted(tmp_path, zooms=(1.0, 1.0, 2.0))
    assert nib.load(zxy).header.get_zooms() == (2.0, 1.0, 1.0)
    assert check_grid([str(ras), str(zxy)]) == RAS.shape
    las = _las(tmp_path, zooms=(2.0, 1.0, 1.0))
    with pytest.raises(DataError, match=r"las\.nii\.gz: voxel size 2x1x1 mm differs from 1x1x2 mm"):
        check_grid([str(ras), str(zxy), str(las)])


def test_npy_has_no_voxel_size_and_reads_as_stored(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", RAS[::-1][None, None])
    nifti = _save(tmp_path / "b.nii.gz", RAS, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert image_grid(tmp_path / "a.npy") == (RAS.shape, None)
    assert check_grid([str(tmp_path / "a.npy"), str(nifti)]) == RAS.shape
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy")[0], RAS[::-1])


def test_degenerate_affine_is_a_data_error(tmp_path: Path) -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 2] = affine[:3, 1]  # two stored axes along the same direction: no z axis
    path = _save(tmp_path / "bad.nii", RAS, affine)
    with pytest.raises(DataError, match=r"bad\.nii: the affine .*degenerate \(no orientation\)"):
        read_image(path)
