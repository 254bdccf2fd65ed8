"""Manifest CSVs: one row per scan, ``participant_id`` + ``path`` and optional metadata columns.

Paths are relative to ``data_root`` when given, else to the manifest's folder, and must stay inside
that base (a ``..`` that leaves it, or an absolute path elsewhere, is refused). Images are NIfTI
(``.nii``/``.nii.gz``, read with nibabel) or ``.npy``. The schema is documented in
``data_manifests/README.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medssl.data.cohort import Cohort, PathSource, numeric_column, check_unique, standardize_table
from medssl.data.images import is_image_path
from medssl.data.openbhb import check_shapes
from medssl.errors import DataError
from medssl.utils.io import atomic_path, ensure_writable

REQUIRED_COLUMNS = ("participant_id", "path")
OPTIONAL_COLUMNS = ("session", "study", "site", "age", "sex", "diagnosis", "tiv", "split", "sha256")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_TEXT = ("participant_id", "path", "session", "study", "site", "sex", "diagnosis", "split", "sha256")


def resolve_path(raw: str, base: Path, where: str) -> Path:
    """``base / raw`` normalised; raise DataError when it leaves ``base`` (``where`` names the row)."""
    if not raw:
        raise DataError(f"{where}: empty path; give the image path relative to {base}")
    full = Path(os.path.normpath(Path(raw) if Path(raw).is_absolute() else base / raw))
    base_norm = Path(os.path.normpath(base))
    if full != base_norm and base_norm not in full.parents:
        raise DataError(
            f"{where}: path {raw!r} escapes the data root {base_norm}; use a path inside it, "
            "or point data_root (--data-root) at a folder that contains it"
        )
    return full


def read_manifest_table(manifest: Path, data_root: str | Path | None = None) -> pd.DataFrame:
    """The checked table of a manifest, with ``path`` made absolute (files must exist)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"{manifest}: manifest file does not exist")
    try:
        table = pd.read_csv(manifest, dtype={c: str for c in _TEXT}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest}: not a readable CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{manifest}: missing required column(s) {', '.join(missing)}; a manifest needs "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    where = str(manifest)
    table = standardize_table(table, where)
    if "tiv" in table.columns:
        table["tiv"] = numeric_column(table, "tiv", where)
    base = (Path(data_root).expanduser() if data_root else manifest.parent).absolute()  # symlinks kept
    paths = []
    for i, (pid, raw) in enumerate(zip(table["participant_id"], table["path"].fillna(""))):
        row = f"{manifest} row {i + 1} ({pid})"
        full = resolve_path(str(raw).strip(), base, row)
        if not is_image_path(full):
            raise DataError(f"{row}: {full.name} is not an image; use .nii, .nii.gz or .npy")
        if not full.is_file():
            raise DataError(f"{row}: image {full} does not exist; fix the path or the data root")
        paths.append(str(full))
    table["path"] = paths
    check_unique(table, where, ("participant_id", "session") if "session" in table else ("participant_id",))
    return table


def read_manifest(manifest: str | Path, data_root: str | Path | None = None, modality: str = "vbm") -> Cohort:
    """Open a manifest CSV as a Cohort (every image header is checked for a common shape)."""
    table = read_manifest_table(Path(manifest), data_root)
    return Cohort(table, PathSource(), check_shapes(table), manifest, modality, layout="manifest")


def manifest_frame(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The manifest columns of a scan table, with ``path`` relative to ``root`` (POSIX separators)."""
    out = pd.DataFrame({c: table[c] for c in MANIFEST_COLUMNS if c in table.columns})
    out["path"] = [Path(os.path.relpath(p, root)).as_posix() for p in table["path"]]
    return out


def write_manifest(table: pd.DataFrame, out: str | Path, root: str | Path, overwrite: bool = False) -> Path:
    """Write a manifest CSV atomically (paths relative to ``root``); refuse to overwrite by default."""
    out = Path(out)
    if not overwrite:
        ensure_writable(out, overwrite=False)
    frame = manifest_frame(table, Path(root))
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return out
