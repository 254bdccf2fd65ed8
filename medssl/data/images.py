"""Reading one 3D image lazily: per-subject ``.npy`` (memory-mapped) or NIfTI (nibabel).

Every reader returns float32 arrays of shape ``(1, D, H, W)`` and raises ``DataError`` naming the file
and the fix for missing, truncated or corrupt files, unexpected shapes and NaN/Inf voxels.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

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
    import nibabel as nib

    if not path.is_file():
        raise DataError(f"{path}: image file is missing; restore it or fix its path in the manifest")
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises many types for bad headers
        raise DataError(f"{path}: not a readable NIfTI file ({exc}); re-export or re-download it") from exc


def nifti_volume_shape(path: Path) -> tuple[int, int, int]:
    """``(D, H, W)`` from a NIfTI header; a trailing singleton 4th axis is accepted."""
    shape = tuple(int(s) for s in _nifti(path).shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise DataError(f"{path}: NIfTI of shape {shape} is not one 3D volume; split 4D series first")
    return shape  # type: ignore[return-value]


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Spatial shape ``(D, H, W)`` of an image file, from its header only."""
    path = Path(path)
    if str(path).endswith(".npy"):
        return volume_shape(open_npy(path).shape, path)
    if str(path).endswith(NIFTI_SUFFIXES):
        return nifti_volume_shape(path)
    raise DataError(f"{path}: unsupported image type; use .npy, .nii or .nii.gz")


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
        img = _nifti(path)
        shape = nifti_volume_shape(path)
        try:
            volume = np.asarray(img.dataobj, dtype=np.float32).reshape(1, *shape)
        except Exception as exc:  # gzip/zlib/EOF errors of a truncated file
            raise DataError(
                f"{path}: cannot read the image data ({exc}); the file is truncated or corrupt"
            ) from exc
    else:
        raise DataError(f"{path}: unsupported image type; use .npy, .nii or .nii.gz")
    return check_finite(volume, str(path))


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
