"""What an encoder trained on a cohort may say about that cohort without naming any local path.

``describe_cohort`` is recorded in every encoder card at pretraining time (the data may be gone when the
encoder is shared) and becomes the "pretraining cohort" of an exported model card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medssl.data.cohort import Cohort
from medssl.data.images import image_grid

# OpenBHB's distributed grids (HF / DataPort .npy arrays carry no header): VBM 1.5 mm, quasi-raw 1 mm
OPENBHB_VOXEL_MM = {(121, 145, 121): 1.5, (182, 218, 182): 1.0}


def synthetic_params(cohort: Cohort) -> dict[str, Any] | None:
    """The ``synthetic.json`` of a cohort written by ``medssl synth`` (at its root or beside its manifest)."""
    source = Path(cohort.source)
    for folder in (source, source.parent):
        path = folder / "synthetic.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def cohort_name(cohort: Cohort) -> str:
    """``synthetic healthy cohort (medssl generator v3, seed 0)``, ``OpenBHB``, or the manifest's studies."""
    synthetic = synthetic_params(cohort)
    if synthetic is not None:
        return (f"synthetic {synthetic.get('cohort', '')} cohort (medssl generator "
                f"v{synthetic.get('generator_version', '?')}, seed {synthetic.get('seed', '?')})")
    if cohort.layout in ("hf", "dataport", "kit"):
        return "OpenBHB"
    studies = _studies(cohort)
    return f"studies {', '.join(studies)}" if studies else "an unnamed cohort (manifest without a study column)"


def voxel_size_mm(cohort: Cohort) -> list[float] | None:
    """Voxel size (mm, RAS axes) of the stored scans: NIfTI header of the first scan, ``synthetic.json``,
    or OpenBHB's known grids; None when unknown (``.npy`` arrays of another grid)."""
    if "path" in cohort.table.columns and len(cohort.table):
        zooms = image_grid(cohort.table["path"].iloc[0])[1]
        if zooms is not None:
            return [round(float(z), 4) for z in zooms]
    synthetic = synthetic_params(cohort) or {}
    if synthetic.get("voxel_size_mm"):
        return [float(v) for v in synthetic["voxel_size_mm"]]
    size = OPENBHB_VOXEL_MM.get(tuple(cohort.image_shape))
    return [size] * 3 if size else None


def describe_cohort(cohort: Cohort, split: str = "train") -> dict[str, Any]:
    """Name, layout, modality, sizes of ``split`` (scans, subjects, sites), studies, stored image
    shape and voxel size: no path, no participant ID."""
    rows = cohort.table[cohort.table["split"] == split]
    return {
        "name": cohort_name(cohort),
        "layout": cohort.layout,
        "modality": cohort.modality,
        "split": split,
        "n_scans": int(len(rows)),
        "n_subjects": int(rows["participant_id"].nunique()),
        "n_sites": int(rows["site"].nunique()),
        "studies": _studies(cohort, rows),
        "image_shape": list(cohort.image_shape),
        "voxel_size_mm": voxel_size_mm(cohort),
    }


def _studies(cohort: Cohort, rows: Any = None) -> list[str]:
    table = cohort.table if rows is None else rows
    if "study" not in table.columns:
        return []
    return sorted({str(s) for s in table["study"] if str(s).strip()})
