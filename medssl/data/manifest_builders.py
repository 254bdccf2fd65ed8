"""Build manifest tables from OpenBHB folders, the UK Biobank imaging layout and BIDS-like trees.

Each builder returns a scan table with absolute ``path`` s (write it with ``write_manifest``).
UK Biobank: ``ROOT/<eid>_20252_<instance>_<array>/T1/T1_brain_to_MNI.nii.gz`` (or the FAST GM partial
volume map ``T1/T1_fast/T1_brain_pve_1.nii.gz``) and a fields CSV with ``eid``, age at scan (21003),
sex (31: 0 female, 1 male) and imaging centre (54); column names such as ``21003-2.0``, ``21003_2_0``,
``p21003_i2`` or ``f.21003.2.0`` are accepted, the instance is matched to the image folder's.
The fields file may cover more participants than have images; an image without a fields row is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from medssl.data.cohort import check_unique, refuse_partly_empty, text_column
from medssl.data.openbhb import match_images
from medssl.data.sources import open_cohort
from medssl.errors import DataError

UKB_IMAGES = {"t1": "T1/T1_brain_to_MNI.nii.gz", "gm": "T1/T1_fast/T1_brain_pve_1.nii.gz"}
UKB_FIELDS = {"age": "21003", "sex": "31", "site": "54"}
_UKB_FOLDER = re.compile(r"^(\d+)_20252_(\d+)_(\d+)$")
_UKB_COLUMN = re.compile(r"^(?:p|f\.)?(\d+)(?:[-_.]i?(\d+)(?:[._]a?\d+)?)?$")
BIDS_ALIASES = {
    "diagnosis": ("diagnosis", "dx", "group", "dx_group"),
    "site": ("site", "site_id", "scanner", "centre", "center"),
    "study": ("study", "dataset"),
}


def build_openbhb_manifest(root: str | Path, modality: str = "vbm") -> pd.DataFrame:
    """Manifest table of an OpenBHB HuggingFace or DataPort root (the kit has no per-scan files)."""
    cohort = open_cohort(root, modality)
    if cohort.layout not in ("hf", "dataport"):
        raise DataError(
            f"{root}: a {cohort.layout} layout has no per-scan files to list; use the HuggingFace or "
            "DataPort release (or open the kit directly with open_cohort)"
        )
    return cohort.table


def _ukb_column(columns: list[str], field: str, instance: str | None) -> str | None:
    """The fields-table column of ``field`` at ``instance`` (any instance when None or absent)."""
    fallback = None
    for col in columns:
        m = _UKB_COLUMN.match(str(col).strip())
        if m and m.group(1) == field:
            if instance is None or m.group(2) in (instance, None):
                return col
            fallback = fallback or col
    return fallback if instance is None else None


def _ukb_sex(value: object) -> str:
    text = str(value).strip().lower()
    return {"0": "female", "0.0": "female", "1": "male", "1.0": "male"}.get(text, text if text != "nan" else "")


def build_ukbiobank_manifest(root: str | Path, fields: str | Path, image: str = "t1") -> pd.DataFrame:
    """Manifest table of a UK Biobank imaging download plus its fields CSV (see module docstring)."""
    root, fields = Path(root), Path(fields)
    if image not in UKB_IMAGES:
        raise DataError(f"unknown UK Biobank image {image!r}; use one of {', '.join(UKB_IMAGES)}")
    try:
        table = pd.read_csv(fields, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{fields}: cannot read the fields CSV ({exc})") from exc
    eid_col = next((c for c in ("eid", "f.eid", "participant_id") if c in table.columns), None)
    if eid_col is None:
        raise DataError(f"{fields}: missing column 'eid' (the UK Biobank participant id)")
    check_unique(table.rename(columns={eid_col: "participant_id"}), str(fields))
    by_eid = table.set_index(eid_col)
    rows = []
    for folder in sorted(p for p in root.iterdir() if _UKB_FOLDER.match(p.name)):
        eid, instance, array = _UKB_FOLDER.match(folder.name).groups()  # type: ignore[union-attr]
        path = folder / UKB_IMAGES[image]
        if not path.is_file():
            raise DataError(f"{folder}: no {UKB_IMAGES[image]}; extract the imaging zip completely")
        if eid not in by_eid.index:
            raise DataError(f"{path}: image without a row in {fields} (eid {eid}); add the participant's fields")
        record = by_eid.loc[eid]
        values = {}
        for name, field in UKB_FIELDS.items():
            col = _ukb_column(list(table.columns), field, None if name == "sex" else instance)
            if col is None:
                raise DataError(f"{fields}: no column for field {field} ({name}) at instance {instance}")
            values[name] = record[col]
        rows.append({"participant_id": eid, "path": str(path), "session": f"{instance}_{array}",
                     "study": "ukbiobank", "site": values["site"], "age": values["age"],
                     "sex": _ukb_sex(values["sex"]), "diagnosis": "", "split": "train"})  # fmt: skip
    if not rows:
        raise DataError(f"{root}: no <eid>_20252_<instance>_<array> folders found")
    return pd.DataFrame(rows)


def _bids_entity(path: Path, key: str) -> str:
    m = re.search(rf"(?:^|_){key}-([A-Za-z0-9]+)", path.name)
    return m.group(1) if m else ""


def build_bids_manifest(
    root: str | Path, participants: str | Path, pattern: str = "sub-*/**/anat/*_T1w.nii*"
) -> pd.DataFrame:
    """Manifest table of a BIDS-like tree: images matching ``pattern`` under ``root`` + participants.tsv.

    Column aliases are accepted (diagnosis: dx/group, site: site_id/scanner, study: dataset); ``study``
    defaults to the root folder's name. Several images per participant and session are refused
    (narrow ``pattern``, e.g. to ``*_run-1_T1w.nii.gz``).
    """
    root, participants = Path(root), Path(participants)
    try:
        table = pd.read_csv(participants, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{participants}: cannot read the participants table ({exc})") from exc
    if "participant_id" not in table.columns:
        raise DataError(f"{participants}: missing required column 'participant_id'")
    table["participant_id"] = table["participant_id"].str.strip().str.removeprefix("sub-")
    for name, aliases in BIDS_ALIASES.items():
        col = next((c for c in aliases if c in table.columns), None)
        table[name] = table[col] if col else (root.name if name == "study" else "")
    table["site"] = text_column(table["site"])  # a manifest with some sites empty would not open
    refuse_partly_empty(table, "site", str(participants), "fill in every site, or leave the whole column empty")
    images = sorted(p for p in root.glob(pattern) if p.is_file())
    by_scan: dict[tuple[str, str], Path] = {}
    for path in images:
        key = (_bids_entity(path, "sub"), _bids_entity(path, "ses"))
        if key in by_scan:
            raise DataError(f"{path}: second image of sub-{key[0]} ses-{key[1] or '-'} (also {by_scan[key]}); "
                            "narrow --pattern to one image per session")  # fmt: skip
        by_scan[key] = path
    files = {}
    for (sub, ses), path in by_scan.items():
        files.setdefault(sub, []).append((ses, path))
    single = {sub: scans[0][1] for sub, scans in files.items()}
    matched = match_images(table, single, str(participants), f"{root}/{pattern}")
    rows = []
    for _, row in matched.iterrows():
        for ses, path in files[row["participant_id"]]:
            rows.append({**row.to_dict(), "path": str(path), "session": ses})
    return pd.DataFrame(rows)
