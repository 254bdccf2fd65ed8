"""Reading one 3D image lazily: per-subject ``.npy`` (memory-mapped) or NIfTI (nibabel).

Every reader returns float32 arrays of shape ``(1, D, H, W)`` and raises ``DataError`` naming the file
and the fix for missing, truncated or corrupt files, unexpected shapes and NaN/Inf voxels.

NIfTI volumes are returned in RAS+ orientation (``nibabel.as_closest_canonical``: axis flips and
permutations chosen from the affine, no resampling), as MONAI's ``Orientationd(axcodes="RAS")``; their
shape and voxel size are judged in that orientation too, from the header alone. ``.npy`` arrays carry
no affine and are returned as stored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.orientations import apply_orientation, io_orientation

from medssl.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".npy", *NIFTI_SUFFIXES)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True for ``.npy``, ``.nii`` and ``.nii.gz`` file names."""
    return str(path).endswith(IMAGE_SUFFIXES)


def open_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a ``.npy`` file (reads the header only); a truncated or corrupt file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file is missing; restore it or remove its row")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable .npy array ({exc}); the file is truncated or corrupt, "
            "re-download or regenerate it"
        ) from exc


def volume_shape(shape: tuple[int, ...], path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(D, H, W)`` of a stored array shaped ``(1, 1, D, H, W)``, ``(1, D, H, W)`` or ``(D, H, W)``."""
    lead, spatial = shape[:-3], shape[-3:]
    if len(shape) < 3 or any(s != 1 for s in lead) or len(lead) > 2:
        raise DataError(
            f"{path}: array of shape {tuple(shape)} is not one 3D volume; expected (1, 1, D, H, W), "
            "(1, D, H, W) or (D, H, W) (one modality, one subject per file)"
        )
    return tuple(int(s) for s in spatial)  # type: ignore[return-value]


def _nifti(path: Path):  # noqa: ANN202  (nibabel image)
    if not path.is_file():
        raise DataError(f"{path}: image file is missing; restore it or fix its path in the manifest")
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises many types for bad headers
        raise DataError(f"{path}: not a readable NIfTI file ({exc}); re-export or re-download it") from exc


def _stored_shape(img, path: Path) -> tuple[int, int, int]:  # noqa: ANN001  (nibabel image)
    """Stored ``(X, Y, Z)`` of a NIfTI; a trailing singleton 4th axis is accepted."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise DataError(f"{path}: NIfTI of shape {shape} is not one 3D volume; split 4D series first")
    return shape  # type: ignore[return-value]


def _ras_orientation(img, path: Path) -> np.ndarray:  # noqa: ANN001  (nibabel image)
    """``(3, 2)`` nibabel orientation (stored axis -> RAS axis, flip) of ``io_orientation(affine)``."""
    ornt = io_orientation(img.affine)
    if np.isnan(ornt).any():
        raise DataError(
            f"{path}: the affine {img.affine.tolist()} is degenerate (no orientation); "
            "fix the qform/sform of the header"
        )
    return ornt


def nifti_grid(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """RAS+ shape ``(D, H, W)`` and voxel size (mm) of a NIfTI, from its header only.

    Stored axis ``i`` becomes RAS axis ``ornt[i, 0]``; the voxel size along it is the norm of the
    affine's column ``i`` (what ``as_closest_canonical(img).header.get_zooms()`` reports, without
    reading the data).
    """
    path = Path(path)
    img = _nifti(path)
    stored, sizes = _stored_shape(img, path), voxel_sizes(img.affine)
    shape, zooms = [0, 0, 0], [0.0, 0.0, 0.0]
    for i, axis in enumerate(_ras_orientation(img, path)[:, 0].astype(int)):
        shape[axis], zooms[axis] = stored[i], float(sizes[i])
    return tuple(shape), tuple(zooms)  # type: ignore[return-value]


def image_grid(
    path: str | os.PathLike[str],
) -> tuple[tuple[int, int, int], tuple[float, float, float] | None]:
    """``(D, H, W)`` and voxel size (mm) of an image file from its header; ``None`` size for ``.npy``."""
    path = Path(path)
    if str(path).endswith(".npy"):
        return volume_shape(open_npy(path).shape, path), None
    if str(path).endswith(NIFTI_SUFFIXES):
        return nifti_grid(path)
    raise DataError(f"{path}: unsupported image type; use .npy, .nii or .nii.gz")


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Spatial shape ``(D, H, W)`` of an image file (RAS+ for NIfTI), from its header only."""
    return image_grid(path)[0]


def check_grid(paths: Sequence[str], tol_mm: float = 1e-3) -> tuple[int, int, int]:
    """Read every image header; shapes and NIfTI voxel sizes must agree. Returns ``(D, H, W)``.

    Voxel sizes agree when no RAS component differs by more than ``tol_mm`` from those of the first
    NIfTI; ``.npy`` files have no voxel size and are judged on shape only.
    """
    if not len(paths):
        raise DataError("the cohort has no scans")
    first, first_shape = paths[0], None
    ref: tuple[str, tuple[float, float, float]] | None = None  # first NIfTI and its voxel size
    for i, path in enumerate(paths):  # each header read once
        shape, zooms = image_grid(path)
        first_shape = first_shape or shape
        if shape != first_shape:
            raise DataError(
                f"{path}: shape {shape} differs from {first_shape} of {first} "
                f"(row {i + 1}); resample all scans to one grid"
            )
        if zooms is not None and ref is None:
            ref = (path, zooms)
        elif zooms is not None and np.abs(np.subtract(zooms, ref[1])).max() > tol_mm:
            raise DataError(
                f"{path}: voxel size {_mm(zooms)} differs from {_mm(ref[1])} of {ref[0]} "
                f"(row {i + 1}); resample all scans to one voxel size beforehand "
                "(e.g. nilearn.image.resample_img, ANTs or FSL)"
            )
    return first_shape  # type: ignore[return-value]


def _mm(zooms: tuple[float, float, float]) -> str:
    """``1x1x1.2 mm``."""
    return "x".join(f"{z:g}" for z in zooms) + " mm"


def check_finite(volume: np.ndarray, where: str) -> np.ndarray:
    """Return ``volume`` unchanged, or raise DataError when it holds NaN or Inf voxels."""
    if not np.isfinite(volume).all():
        bad = int(volume.size - np.isfinite(volume).sum())
        raise DataError(
            f"{where}: {bad} NaN/Inf voxels; fix the preprocessing output or drop this scan"
        )
    return volume


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one image file as float32 ``(1, D, H, W)``, checking that every voxel is finite."""
    path = Path(path)
    if str(path).endswith(".npy"):
        arr = open_npy(path)
        shape = volume_shape(arr.shape, path)
        try:
            volume = np.asarray(arr, dtype=np.float32).reshape(1, *shape)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot read the array data ({exc}); regenerate it") from exc
    elif str(path).endswith(NIFTI_SUFFIXES):
        volume = read_nifti_ras(path)
    else:
        raise DataError(f"{path}: unsupported image type; use .npy, .nii or .nii.gz")
    return check_finite(volume, str(path))


def read_nifti_ras(path: Path) -> np.ndarray:
    """NIfTI data as float32 ``(1, D, H, W)`` in RAS+ orientation.

    The same flips and transposes as ``nibabel.as_closest_canonical`` (``apply_orientation`` of
    ``io_orientation(affine)``), applied to the float32 array so that no float64 copy is made.
    """
    img = _nifti(path)
    stored, ornt = _stored_shape(img, path), _ras_orientation(img, path)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(stored)
    except Exception as exc:  # gzip/zlib/EOF errors of a truncated file
        raise DataError(
            f"{path}: cannot read the image data ({exc}); the file is truncated or corrupt"
        ) from exc
    return np.ascontiguousarray(apply_orientation(data, ornt))[None]


def file_key(path: str | os.PathLike[str]) -> str:
    """A cache key that changes when the file changes: path, size and modification time."""
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
