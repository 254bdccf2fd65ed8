"""``open_cohort``: one entry point that recognises every supported layout.

Layouts, tried in this order on a folder: the challenge kit (``data/train.npy`` + ``data/train.tsv``),
OpenBHB HuggingFace (``participants.tsv`` + ``{train,val}/derivatives``), IEEE DataPort
(``{train,val}_labels/participants.tsv``), a folder holding ``manifest_<modality>.csv`` or
``manifest.csv`` (what ``medssl synth --layout nifti`` writes). A ``.csv`` file is a manifest.
``"synthetic"`` is the embedded default cohort (generated once into the cache, see ``ensure_synthetic``).
"""

from __future__ import annotations

from pathlib import Path

from medssl.data.cohort import MODALITIES, Cohort
from medssl.data.kit import kit_data_dir, open_kit
from medssl.data.manifest import read_manifest
from medssl.data.openbhb import is_dataport, is_hf, open_dataport, open_hf
from medssl.data.synthetic import ensure_synthetic
from medssl.errors import DataError


def detect_layout(path: Path, modality: str = "vbm") -> tuple[str, Path]:
    """``(layout, location)`` with layout in kit/hf/dataport/manifest; DataError when none fits."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "manifest", path
        raise DataError(f"{path}: a cohort file must be a manifest .csv (or give an OpenBHB folder)")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder; give an OpenBHB root or a manifest CSV")
    data_dir = kit_data_dir(path)
    if data_dir is not None:
        return "kit", data_dir
    if is_hf(path):
        return "hf", path
    if is_dataport(path):
        return "dataport", path
    for name in (f"manifest_{modality}.csv", "manifest.csv"):
        if (path / name).is_file():
            return "manifest", path / name
    raise DataError(
        f"{path}: not a recognised cohort folder. Expected one of: data/train.npy + data/train.tsv "
        "(challenge kit); participants.tsv + {train,val}/derivatives/ (OpenBHB HuggingFace); "
        "{train,val}_labels/participants.tsv + {train,val}_<modality>/ (IEEE DataPort); "
        f"manifest_{modality}.csv or manifest.csv; or give a manifest CSV"
    )


def open_cohort(
    source: str | Path, modality: str = "vbm", data_root: str | Path | None = None
) -> Cohort:
    """Open a cohort from an OpenBHB root (HF, DataPort or kit layout), a manifest CSV or ``"synthetic"``.

    Args:
        source: folder, manifest ``.csv``, or ``"synthetic"`` (the embedded default cohort).
        modality: ``vbm`` (CAT12 GM map, default) or ``quasiraw`` (skull-stripped T1w); manifests hold
            one modality per file, so ``modality`` only picks the file inside a synthetic folder.
        data_root: base folder of relative manifest paths (default: the manifest's folder).

    Returns:
        A validated ``Cohort`` (table checked, every image header read; voxels are read lazily).
    """
    if modality not in MODALITIES:
        raise DataError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    if str(source) == "synthetic":
        source = ensure_synthetic()
    layout, where = detect_layout(Path(source).expanduser(), modality)
    if layout == "kit":
        return open_kit(where, modality)
    if layout == "hf":
        return open_hf(where, modality)
    if layout == "dataport":
        return open_dataport(where, modality)

    return read_manifest(where, data_root, modality)
