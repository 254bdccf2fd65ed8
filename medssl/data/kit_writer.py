"""``write_kit_layout``: write a cohort in the challenge kit layout, to dry-run the challenge offline;
``write_standin_kit``: random full-width kit rows and masks of the real sizes, to check a submission's contract.

Output: ``OUT/data/{train,test}.{npy,tsv}`` (rows ``[vbm[mask] | quasiraw[mask]]`` float32; test rows
are all ``internal_test`` rows first, then ``external_test``, as in the kit) and the two mask files at
``OUT/`` under the kit's names. Masks come from ``masks=`` (bool arrays), else from the kit mask files of
the source cohort (its root or ``resource/``), else they are synthesised from the data: the mean image
over the cohort scaled to max 1 is written as the map and thresholded like the kit (> 0.05 for vbm;
for quasiraw the map is zeroed below 0.05 so that the kit's ``> 0`` gives the same mask).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from medssl.data.cohort import Cohort
from medssl.data.kit import KIT_GRIDS, KIT_MASK_VOXELS, KIT_ROW_WIDTH, MASK_FILES, find_mask, load_mask, mask_volume
from medssl.errors import DataError
from medssl.utils.io import atomic_path, ensure_writable

KIT_TSV_COLUMNS = ("participant_id", "age", "site", "split", "sex", "diagnosis", "study")


def _data_maps(cohort: Cohort) -> np.ndarray:
    total = np.zeros(cohort.image_shape, dtype=np.float64)
    for i in range(len(cohort)):
        total += np.abs(cohort.read(i)[0])
    return (total / max(total.max(), 1e-12)).astype(np.float32)


def kit_maps(cohorts: dict[str, Cohort], masks: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The float map written as each modality's kit mask file (thresholding it gives the mask)."""
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


def central_mask(shape: tuple[int, int, int], count: int) -> np.ndarray:
    """Bool ``shape`` mask of exactly ``count`` voxels: those nearest the centre (a blob, like a brain mask).

    Distance is measured in units of each axis' length; ties are broken by C order (stable sort).
    """
    if not 0 < count <= int(np.prod(shape)):
        raise ValueError(f"a {shape} mask cannot hold {count} voxels")
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) / n) ** 2 for n in shape]
    dist = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    keep = np.zeros(dist.size, bool)
    keep[np.argsort(dist, axis=None, kind="stable")[:count]] = True
    return keep.reshape(shape)


def write_standin_kit(
    out: str | Path,
    *,
    width: int = KIT_ROW_WIDTH,
    grids: dict[str, tuple[int, int, int]] = KIT_GRIDS,
    voxels: dict[str, int] = KIT_MASK_VOXELS,
    n_train: int = 10,
    n_internal: int = 4,
    n_external: int = 2,
    seed: int = 0,
) -> Path:
    """A stand-in for the kit's data at ``out``: the real widths, random rows, as the kit's ``--test`` mode.

    Writes the two mask files at ``out`` (a 4-D CAT12-like TPM of ``voxels["vbm"]`` voxels > 0.05, a
    quasi-raw template of ``voxels["quasiraw"]`` voxels > 0, on ``grids``) and ``out/data/{train,test}.npy``:
    float32 rows of ``width`` columns, uniform in [0, 1), written one row at a time (a real row is 14.6 MB).
    The tables have the columns the kit's ``download_data.py --test`` writes (``age``, ``site``,
    ``split``): ``internal_train`` rows on sites 0/1 (alternating), then ``internal_test`` rows on sites
    0/1 and ``external_test`` rows on site 3. Scores on these rows mean nothing; the contract is checked.
    """
    masks = {m: central_mask(grids[m], voxels[m]) for m in ("vbm", "quasiraw")}
    if width < voxels["vbm"] + voxels["quasiraw"]:
        raise ValueError(f"rows of {width} columns cannot hold {voxels['vbm'] + voxels['quasiraw']} voxels")
    rng = np.random.default_rng(seed)
    out = ensure_writable(out, overwrite=False)
    with atomic_path(out) as tmp:
        (tmp / "data").mkdir(parents=True)
        tpm = np.where(masks["vbm"], 0.5, 0.02).astype(np.float32)[..., None]  # the kit's TPM is 4-D
        nib.save(nib.Nifti1Image(tpm, np.eye(4)), tmp / MASK_FILES["vbm"][0])
        brain = masks["quasiraw"].astype(np.int16) * 100
        nib.save(nib.Nifti1Image(brain, np.eye(4)), tmp / MASK_FILES["quasiraw"][0])
        parts = {"train": [("internal_train", n_train)],
                 "test": [("internal_test", n_internal), ("external_test", n_external)]}
        for name, splits in parts.items():
            rows = [(split, 3 if split == "external_test" else i % 2) for split, n in splits for i in range(n)]
            matrix = np.lib.format.open_memmap(tmp / "data" / f"{name}.npy", mode="w+", dtype=np.float32,
                                               shape=(len(rows), width))
            for i in range(len(rows)):
                matrix[i] = rng.random(width, dtype=np.float32)
            matrix.flush()
            del matrix
            table = pd.DataFrame({"age": rng.integers(5, 80, len(rows)), "site": [s for _, s in rows],
                                  "split": [split for split, _ in rows]})
            table.to_csv(tmp / "data" / f"{name}.tsv", sep="\t", index=False)
    return out
