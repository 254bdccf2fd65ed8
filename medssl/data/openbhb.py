"""OpenBHB as distributed, per-subject ``.npy`` layouts: HuggingFace and IEEE DataPort.

HuggingFace: ``participants.tsv`` at the root, images in
``{train,val}/derivatives/sub-<id>/ses-<s>/sub-<id>_preproc-<pattern>.npy``.
DataPort: flat ``{train,val}_{vbm,quasiraw}/sub-<id>_preproc-<pattern>.npy`` and
``{train,val}_labels/participants.tsv``. Arrays are ``(1, 1, D, H, W)`` float64 on disk and are read as
float32 through a memory map.

Site label: the challenge's unit is ``siteXacq`` (site x acquisition setting, 64 codes; external site 36
also occurs in train with another setting). HF tables carry it and it becomes ``site``. DataPort tables
have ``site`` and ``acquisition_setting`` but no ``siteXacq``; the public sources give no mapping from the
pair to the challenge's integer codes, so the site becomes the string ``"<site>_<acquisition_setting>"``
(e.g. ``"36_2"``), which groups scans exactly as ``siteXacq`` does. Either way the acquisition site is kept
as ``scanner_site``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medssl.data.cohort import SPLITS, Cohort, PathSource, check_unique, standardize_table, text_column
from medssl.data.images import check_grid
from medssl.errors import DataError

SUFFIXES = {"vbm": "_preproc-cat12vbm_desc-gm_T1w.npy", "quasiraw": "_preproc-quasiraw_T1w.npy"}
HF_FOLDERS = ("train", "val")


def is_hf(root: Path) -> bool:
    return (root / "participants.tsv").is_file() and any(
        (root / f / "derivatives").is_dir() for f in HF_FOLDERS
    )


def is_dataport(root: Path) -> bool:
    return any((root / f"{f}_labels" / "participants.tsv").is_file() for f in HF_FOLDERS)


def site_x_acquisition(table: pd.DataFrame, where: str) -> pd.Series:
    """``"<site>_<acquisition_setting>"`` per row (``36.0`` and ``36`` both give ``"36"``), shape (n_rows,).

    Raises:
        DataError: a row has no site or no acquisition setting (names the file, row and participant).
    """
    site, acq = text_column(table["site"]), text_column(table["acquisition_setting"])
    empty = table.index[(site == "") | (acq == "")]
    if len(empty):
        i = int(empty[0])
        raise DataError(
            f"{where}: row {i + 1} (participant {table.at[i, 'participant_id']}) lacks site or "
            f"acquisition_setting ({len(empty)} such rows), both needed for the siteXacq site label; "
            "fill them in or add a siteXacq column"
        )
    return site + "_" + acq


def read_participants(path: Path) -> pd.DataFrame:
    """A ``participants.tsv`` with ids kept as strings (never floats: ``"123.0"`` is read as ``"123"``)
    and the challenge's site unit as ``site``: ``siteXacq`` when present, else ``site x
    acquisition_setting`` (module docstring)."""
    try:
        table = pd.read_csv(path, sep="\t", dtype={"participant_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the participants table ({exc})") from exc
    if "participant_id" not in table.columns:
        raise DataError(f"{path}: missing required column 'participant_id'")
    table["participant_id"] = text_column(table["participant_id"].str.strip().str.removeprefix("sub-"))
    if "siteXacq" in table.columns:
        table = table.rename(columns={"site": "scanner_site", "siteXacq": "site"})
    elif {"site", "acquisition_setting"} <= set(table.columns):
        table["scanner_site"], table["site"] = table["site"], site_x_acquisition(table, str(path))
    return table


def _subject_id(path: Path) -> str:
    return path.name.split("_")[0].removeprefix("sub-")


def match_images(table: pd.DataFrame, files: dict[str, Path], where: str, pattern: str) -> pd.DataFrame:
    """Attach ``path`` to each row; a row without an image or an image without a row is a DataError."""
    ids = set(table["participant_id"])
    orphans = sorted(set(files) - ids)
    if orphans:
        raise DataError(
            f"{files[orphans[0]]}: image without a row in {where} ({len(orphans)} such images); "
            "add the participant to the table or remove the file"
        )
    missing = table.index[~table["participant_id"].isin(set(files))]
    if len(missing):
        i = int(missing[0])
        raise DataError(
            f"{where}: row {i + 1} (participant {table.at[i, 'participant_id']}) has no image "
            f"matching {pattern} ({len(missing)} rows without image); add the file or drop the row"
        )
    table = table.copy()
    table["path"] = [str(files[pid]) for pid in table["participant_id"]]
    return table


def check_shapes(table: pd.DataFrame) -> tuple[int, int, int]:
    """Every image header: shapes (RAS+ for NIfTI) and NIfTI voxel sizes must agree. ``(D, H, W)``."""
    return check_grid(list(table["path"]))


def _finish(table: pd.DataFrame, root: Path, modality: str, layout: str, where: str,
            table_files: dict[str, str]) -> Cohort:
    table = standardize_table(table, where)
    check_unique(table, where)
    return Cohort(table, PathSource(), check_shapes(table), root, modality, layout, table_files=table_files)


def open_hf(root: Path, modality: str = "vbm") -> Cohort:
    """Open the HuggingFace layout of OpenBHB (or a synthetic cohort written in it)."""
    suffix = SUFFIXES[modality]
    where = str(root / "participants.tsv")
    table = read_participants(root / "participants.tsv")
    files: dict[str, Path] = {}
    sessions: dict[str, str] = {}
    for folder in HF_FOLDERS:
        for path in sorted((root / folder / "derivatives").glob(f"sub-*/ses-*/sub-*{suffix}")):
            pid = _subject_id(path)
            if pid in files:
                raise DataError(f"{path}: second image of participant {pid} (also {files[pid]})")
            files[pid], sessions[pid] = path, path.parent.name.removeprefix("ses-")
    if "split" not in table.columns:
        raise DataError(f"{where}: missing column 'split' (train/internal_test/external_test)")
    table = match_images(table, files, where, f"{{train,val}}/derivatives/sub-<id>/ses-*/sub-<id>{suffix}")
    table["session"] = table["participant_id"].map(sessions)
    return _finish(table, root, modality, "hf", where, {split: where for split in SPLITS})


def open_dataport(root: Path, modality: str = "vbm") -> Cohort:
    """Open the IEEE DataPort layout (flat per-modality folders, ``*_labels/participants.tsv``)."""
    tables, files = [], {}
    for folder in HF_FOLDERS:
        labels = root / f"{folder}_labels" / "participants.tsv"
        images = root / f"{folder}_{modality}"
        if not labels.is_file():
            if images.is_dir():
                raise DataError(f"{images} has no labels: {labels} is missing; extract {folder}_labels.zip")
            continue
        table = read_participants(labels)
        if "split" not in table.columns:
            if folder != "train":
                raise DataError(f"{labels}: missing column 'split' (internal_test/external_test)")
            table["split"] = "train"
        tables.append(table)
        for path in sorted(images.glob(f"sub-*{SUFFIXES[modality]}")):
            pid = _subject_id(path)
            if pid in files:
                raise DataError(f"{path}: second image of participant {pid} (also {files[pid]})")
            files[pid] = path
    table = pd.concat(tables, ignore_index=True)
    where = str(root / "{train,val}_labels/participants.tsv")
    check_unique(table, where)
    table = match_images(table, files, where, f"{{train,val}}_{modality}/sub-<id>{SUFFIXES[modality]}")
    files = {split: str(root / f"{'train' if split == 'train' else 'val'}_labels" / "participants.tsv")
             for split in SPLITS}
    return _finish(table, root, modality, "dataport", where, files)
