"""The OpenBHB challenge kit layout: ``data/{train,test}.{npy,tsv}`` of flat masked rows.

A kit row is ``[vbm[mask_vbm] | quasiraw[mask_quasiraw] | other modalities]`` (float32), where
``vol[mask]`` is NumPy boolean indexing in C order, exactly what the kit's ``nilearn.masking.apply_mask``
with an identity affine computes; ``unmask`` is its exact inverse on the mask. In the real kit the two
blocks are 519,945 and 1,827,095 wide; any width consistent with the given masks is accepted. Rows are
memory-mapped and un-masked one subject at a time: a kit file is never loaded whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from medssl.data.cohort import SPLITS, Cohort, check_unique, standardize_table
from medssl.data.images import check_finite, file_key, open_npy
from medssl.errors import DataError

MASK_FILES = {
    "vbm": ("cat12vbm_space-MNI152_desc-gm_TPM.nii.gz", "VBM_MASK", 0.05),
    "quasiraw": ("quasiraw_space-MNI152_desc-brain_T1w.nii.gz", "QUASIRAW_MASK", 0.0),
}
KIT_FILES = ("train", "test")
KIT_ROW_WIDTH = 3659572
KIT_GRIDS = {"vbm": (121, 145, 121), "quasiraw": (182, 218, 182)}
KIT_MASK_VOXELS = {"vbm": 519945, "quasiraw": 1827095}
"""The real kit: row width, the grid of each volume modality and the voxels its mask keeps (openbhb.md 1.2)."""
KIT_SPLIT_NAMES = {"internal_train": "train"}
"""The kit's own split names and medssl's: ``download_data.py --test`` writes ``internal_train`` rows in
train.tsv; its test.tsv names (``internal_test``, ``external_test``) are medssl's already."""


def find_mask(modality: str, roots: list[Path]) -> Path | None:
    """The kit mask file of ``modality``: in one of ``roots`` (kit root first), else ``$VBM_MASK`` /
    ``$QUASIRAW_MASK`` as the kit's ``problem.py`` sets them; None when neither exists."""
    name, env, _ = MASK_FILES[modality]
    for root in roots:
        if (root / name).is_file():
            return root / name
    if os.environ.get(env):
        path = Path(os.environ[env])
        if not path.is_file():
            raise DataError(f"${env}={path} does not exist; unset it or point it at the mask file")
        return path
    return None


def load_mask(modality: str, path: Path) -> np.ndarray:
    """Binarised kit mask ``(D, H, W)`` bool: GM TPM ``> 0.05`` (vbm), brain T1 ``> 0`` (quasiraw)."""
    try:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{path}: cannot read the {modality} mask ({exc}); restore the kit file") from exc
    data = data.reshape(data.shape[:3]) if data.ndim == 4 and data.shape[3] == 1 else data
    if data.ndim != 3:
        raise DataError(f"{path}: mask of shape {data.shape} is not 3D")
    return data > MASK_FILES[modality][2]


def mask_volume(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Flat masked values ``volume[mask]`` (C order) of a ``(D, H, W)`` or ``(1, D, H, W)`` volume."""
    return np.asarray(volume).reshape(mask.shape)[mask]


def unmask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inverse of ``mask_volume``: float32 ``(1, D, H, W)``, zero outside the mask."""
    out = np.zeros(mask.shape, dtype=np.float32)
    out[mask] = values
    return out[None]


class KitSource:
    """Rows carry ``kit_file`` (train/test) and ``kit_row``; reads columns ``[start, stop)`` and un-masks."""

    def __init__(self, data_dir: Path, mask: np.ndarray, start: int) -> None:
        self.data_dir = Path(data_dir)
        self.mask = mask
        self.start, self.stop = int(start), int(start + mask.sum())
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}  # never pickle a memmap (it would copy the data)

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = open_npy(self.data_dir / f"{name}.npy")
        return self._arrays[name]

    def read(self, row: pd.Series) -> np.ndarray:
        name, i = row["kit_file"], int(row["kit_row"])
        values = np.asarray(self._array(name)[i, self.start : self.stop], dtype=np.float32)
        return check_finite(unmask(values, self.mask), f"{self.data_dir / name}.npy row {i}")

    def key(self, row: pd.Series) -> str:
        path = self.data_dir / f"{row['kit_file']}.npy"
        return f"{file_key(path)}:{row['kit_row']}:{self.start}:{self.stop}"


def kit_data_dir(path: Path) -> Path | None:
    """``path/data`` or ``path`` itself when it holds ``train.npy`` or ``train.tsv`` (half a pair is
    reported by ``kit_files``); else None."""
    for cand in (path / "data", path):
        if (cand / "train.npy").is_file() or (cand / "train.tsv").is_file():
            return cand
    return None


def kit_files(data_dir: Path) -> list[str]:
    """The kit files (``train``, ``test``) present as an ``.npy`` + ``.tsv`` pair; half a pair is a
    DataError (a split would silently vanish)."""
    names = []
    for name in KIT_FILES:
        npy, tsv = data_dir / f"{name}.npy", data_dir / f"{name}.tsv"
        if npy.exists() != tsv.exists():
            have, lack = (npy, tsv) if npy.exists() else (tsv, npy)
            raise DataError(f"{have} has no {lack.name} beside it; restore {lack} or remove {have.name}")
        if npy.exists():
            names.append(name)
    return names


def _read_kit_table(data_dir: Path, name: str, width_needed: int) -> pd.DataFrame:
    tsv, npy = data_dir / f"{name}.tsv", data_dir / f"{name}.npy"
    try:
        table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str}, keep_default_na=True)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{tsv}: cannot read the kit table ({exc}); restore it from the kit") from exc
    for col in ("age", "site"):
        if col not in table.columns:
            raise DataError(f"{tsv}: missing required column {col!r} (the kit needs age and site)")
    if "split" not in table.columns:
        if name != "train":
            raise DataError(f"{tsv}: missing column 'split' (internal_test/external_test per row)")
        table["split"] = "train"
    table["split"] = table["split"].replace(KIT_SPLIT_NAMES)
    if "participant_id" not in table.columns:
        table["participant_id"] = [f"{name}-{i}" for i in range(len(table))]
    if "siteXacq" in table.columns:
        table = table.rename(columns={"site": "scanner_site", "siteXacq": "site"})
    shape = open_npy(npy).shape if len(table) else (0, width_needed)
    if len(shape) != 2 or shape[0] != len(table):
        raise DataError(
            f"{npy}: array of shape {shape} does not match {tsv} ({len(table)} rows); "
            "the two files must list the same subjects in the same order"
        )
    if shape[1] < width_needed:
        raise DataError(
            f"{npy}: rows are {shape[1]} wide but the masks need {width_needed} columns "
            "(vbm block, then quasiraw block); use the masks the kit was built with"
        )
    table["kit_file"], table["kit_row"] = name, np.arange(len(table))
    return table


def open_kit(data_dir: Path, modality: str = "vbm") -> Cohort:
    """Open a challenge kit ``data/`` folder; masks come from the kit root (or ``$VBM_MASK`` ...)."""
    roots = [data_dir.parent, data_dir, data_dir.parent / "resource"]
    masks = {}
    for mod in ("vbm", modality):
        path = find_mask(mod, roots)
        if path is None:
            raise DataError(
                f"{data_dir}: no {mod} mask; put {MASK_FILES[mod][0]} in the kit root "
                f"or set ${MASK_FILES[mod][1]} to it"
            )
        masks[mod] = load_mask(mod, path)
    start = 0 if modality == "vbm" else int(masks["vbm"].sum())
    needed = start + int(masks[modality].sum())
    table = pd.concat([_read_kit_table(data_dir, n, needed) for n in kit_files(data_dir)], ignore_index=True)
    table = standardize_table(table, str(data_dir / "{train,test}.tsv"))
    check_unique(table, str(data_dir / "{train,test}.tsv"))
    source = KitSource(data_dir, masks[modality], start)
    root = data_dir.parent if data_dir.name == "data" else data_dir
    files = {split: str(data_dir / ("train.tsv" if split == "train" else "test.tsv")) for split in SPLITS}
    return Cohort(table, source, masks[modality].shape, root, modality, layout="kit", table_files=files)
