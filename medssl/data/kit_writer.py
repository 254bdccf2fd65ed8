"""``write_kit_layout``: write a cohort in the challenge kit layout, to dry-run the challenge offline.

Output: ``OUT/data/{train,test}.{npy,tsv}`` (rows ``[vbm[mask] | quasiraw[mask]]`` float32; test rows
are all ``internal_test`` rows first, then ``external_test``, as in the kit) and the two mask files at
``OUT/`` under the kit's names. Masks come from ``masks=`` (bool arrays), else from the kit mask files of
the source cohort (its root or ``resource/``), else they are synthesised from the data: the mean image
over the cohort scaled to max 1 is written as the map and thresholded like the kit (> 0.05 for vbm;
for quasiraw the map is zeroed below 0.05 so that the kit's ``> 0`` gives the same mask).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.cohort import Cohort
from medssl.data.kit import MASK_FILES, find_mask, mask_volume
from medssl.errors import DataError

KIT_TSV_COLUMNS = ("participant_id", "age", "site", "split", "sex", "diagnosis", "study")


def _data_maps(cohort: Cohort) -> np.ndarray:
    total = np.zeros(cohort.image_shape, dtype=np.float64)
    for i in range(len(cohort)):
        total += np.abs(cohort.read(i)[0])
    return (total / max(total.max(), 1e-12)).astype(np.float32)


def kit_maps(cohorts: dict[str, Cohort], masks: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The float map written as each modality's kit mask file (thresholding it gives the mask)."""
    from medssl.data.kit import load_mask

    maps = {}
    for modality, cohort in cohorts.items():
        if masks and modality in masks:
            maps[modality] = np.asarray(masks[modality], dtype=bool).astype(np.float32)
            continue
        root = Path(cohort.source if cohort.layout != "manifest" else Path(cohort.source).parent)
        found = find_mask(modality, [root, root / "resource"])
        if found is not None:
            maps[modality] = load_mask(modality, found).astype(np.float32)
            continue
        data = _data_maps(cohort)
        maps[modality] = data if modality == "vbm" else np.where(data > 0.05, data, 0.0).astype(np.float32)
    for modality, arr in maps.items():
        if arr.shape != cohorts[modality].image_shape:
            raise DataError(
                f"{modality} mask of shape {arr.shape} does not match the images {cohorts[modality].image_shape}"
            )
    return maps


def _kit_sites(table: pd.DataFrame) -> pd.Series:
    """Integer site labels: the site names when all numeric, else the cohort's site codes."""
    numeric = pd.to_numeric(table["site"], errors="coerce")
    return numeric.astype(int) if numeric.notna().all() else table["site_code"].astype(int)


def write_kit_layout(
    cohort: Cohort,
    out: str | Path,
    *,
    quasiraw: Cohort | None = None,
    masks: dict[str, np.ndarray] | None = None,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``cohort`` (the vbm block) and optionally ``quasiraw`` (same rows) in the kit layout.

    Returns:
        ``out``, a folder openable with ``open_cohort(out, modality)``.
    """
    import nibabel as nib

    from medssl.utils.io import atomic_path, ensure_writable

    out = Path(out)
    if not overwrite:
        ensure_writable(out, overwrite=False)
    elif out.is_file():
        out.unlink()
    cohorts = {"vbm": cohort}
    if quasiraw is not None:
        if list(quasiraw.table["participant_id"]) != list(cohort.table["participant_id"]):
            raise DataError("the quasiraw cohort must list the same participants in the same order")
        cohorts["quasiraw"] = quasiraw
    maps = kit_maps(cohorts, masks)
    bools = {m: maps[m] > MASK_FILES[m][2] for m in maps}
    width = int(sum(b.sum() for b in bools.values()))
    table = cohort.table.assign(site=_kit_sites(cohort.table))
    with atomic_path(out) as tmp:
        (tmp / "data").mkdir(parents=True)
        for modality, arr in maps.items():
            nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), tmp / MASK_FILES[modality][0])
        for name, splits in (("train", ["train"]), ("test", ["internal_test", "external_test"])):
            rows = [i for s in splits for i in np.flatnonzero(table["split"].to_numpy() == s)]
            path = tmp / "data" / f"{name}.npy"
            if not rows:
                np.save(path, np.zeros((0, width), dtype=np.float32))
            else:
                matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(rows), width))
                for j, i in enumerate(rows):
                    matrix[j] = np.concatenate([mask_volume(c.read(i), bools[m]) for m, c in cohorts.items()])
                matrix.flush()
                del matrix
            cols = [c for c in KIT_TSV_COLUMNS if c in table.columns]
            table.iloc[rows][cols].to_csv(tmp / "data" / f"{name}.tsv", sep="\t", index=False)
    return out
