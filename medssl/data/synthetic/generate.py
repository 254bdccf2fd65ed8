"""``make_synthetic_cohort`` and ``ensure_synthetic``: write a synthetic cohort in a real layout.

Layouts: ``hf`` (OpenBHB HuggingFace: ``participants.tsv`` + per-subject ``(1, 1, D, H, W)`` float64
``.npy`` for vbm and quasiraw, masks in ``resource/``), ``nifti`` (``images/*.nii.gz`` +
``manifest_vbm.csv`` / ``manifest_quasiraw.csv``) and ``kit`` (challenge kit, via ``write_kit_layout``).
Output is built in a temporary folder and renamed (atomic); an existing output is refused unless
``overwrite``. Everything is a function of ``seed``: the same arguments give identical files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from nibabel.affines import voxel_sizes

from medssl.data.kit import MASK_FILES
from medssl.data.synthetic.anatomy import Anatomy, load_anatomy
from medssl.data.synthetic.design import COHORTS, design_cohort
from medssl.data.synthetic.simulate import draw_scanner, simulate_scan
from medssl.errors import ConfigError

GENERATOR_VERSION = 2
LAYOUTS = ("hf", "nifti", "kit")
HF_NAMES = {"vbm": "preproc-cat12vbm_desc-gm_T1w", "quasiraw": "preproc-quasiraw_T1w"}


def _write_masks(anat: Anatomy, folder: Path) -> None:
    """Kit-named mask files from the template: GM TPM (vbm) and skull-stripped T1 (quasiraw)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    maps = {"vbm": anat.gm, "quasiraw": np.where(anat.brain > 0.5, np.maximum(anat.t1, 1e-3), 0.0)}
    for modality, arr in maps.items():
        nib.save(nib.Nifti1Image(arr.astype(np.float32), anat.affine), folder / MASK_FILES[modality][0])


def _scans(table: pd.DataFrame, anat: Anatomy, seed: int):  # noqa: ANN202  (generator of dicts)
    """Yield each subject's volumes; per-site scanners and per-subject streams derive from ``seed``."""
    site_seq, subject_seq = np.random.SeedSequence([seed, 1]), np.random.SeedSequence([seed, 2])
    site_rngs = [np.random.default_rng(s) for s in site_seq.spawn(int(table["site"].max()) + 1)]
    scanners = [{m: draw_scanner(r, m) for m in ("vbm", "quasiraw")} for r in site_rngs]
    for row, sub_seq in zip(table.itertuples(), subject_seq.spawn(len(table))):
        yield simulate_scan(anat, row.age, row.tiv, row.diagnosis, row.severity, scanners[row.site],
                            np.random.default_rng(sub_seq))  # fmt: skip


def _write_hf(table: pd.DataFrame, anat: Anatomy, seed: int, root: Path) -> None:
    gmv = []
    voxel_cm3 = abs(np.linalg.det(anat.affine[:3, :3])) / 1000.0
    for row, scans in zip(table.itertuples(), _scans(table, anat, seed)):
        folder = root / ("train" if row.split == "train" else "val") / "derivatives"
        folder = folder / f"sub-{row.participant_id}" / "ses-1"
        folder.mkdir(parents=True)
        for modality, volume in scans.items():
            name = f"sub-{row.participant_id}_{HF_NAMES[modality]}.npy"
            np.save(folder / name, volume.astype(np.float64)[None, None])
        gmv.append(round(float(scans["vbm"].sum() * voxel_cm3), 2))
    table.assign(gmv=gmv).to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_masks(anat, root / "resource")


def _write_nifti(table: pd.DataFrame, anat: Anatomy, seed: int, root: Path) -> None:
    import nibabel as nib

    (root / "images").mkdir(parents=True)
    paths: dict[str, list[str]] = {"vbm": [], "quasiraw": []}
    for row, scans in zip(table.itertuples(), _scans(table, anat, seed)):
        for modality, volume in scans.items():
            rel = f"images/sub-{row.participant_id}_{HF_NAMES[modality]}.nii.gz"
            nib.save(nib.Nifti1Image(volume, anat.affine), root / rel)
            paths[modality].append(rel)
    cols = ["participant_id", "study", "site", "age", "sex", "diagnosis", "tiv", "split"]
    for modality, rel in paths.items():
        frame = table[cols].assign(session="1")
        frame.insert(1, "path", rel)
        frame.to_csv(root / f"manifest_{modality}.csv", index=False)
    _write_masks(anat, root / "resource")


def make_synthetic_cohort(
    out: str | Path,
    cohort: str = "healthy",
    n_subjects: int = 96,
    n_sites: int = 6,
    n_external_sites: int = 2,
    shape: tuple[int, int, int] = (32, 40, 32),
    seed: int = 0,
    layout: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Generate a synthetic cohort (see docs/data.md) and write it to ``out``; returns ``out``.

    Args:
        cohort: ``healthy`` (controls over the lifespan) or a clinical cohort ``scz``/``bd``/``asd``
            (cases and controls at every site).
        n_subjects: total number of subjects (scans).
        n_sites: training sites; ``n_external_sites`` more sites appear only in ``external_test``.
        shape: ``(D, H, W)`` of the volumes.
        layout: ``hf`` (default for healthy), ``nifti`` (default for clinical) or ``kit``.
    """
    from medssl.utils.io import atomic_path, ensure_writable

    layout = layout or ("hf" if cohort == "healthy" else "nifti")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if cohort not in COHORTS:
        raise ConfigError(f"unknown synthetic cohort {cohort!r}; use one of {', '.join(COHORTS)}")
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"shape must be three sizes >= 8 (D H W), got {shape}")
    out = Path(out)
    if not overwrite:
        ensure_writable(out, overwrite=False)
    elif out.is_file():
        out.unlink()
    table = design_cohort(cohort, n_subjects, n_sites, n_external_sites, np.random.default_rng([seed, 0]))
    anat = load_anatomy(shape)  # type: ignore[arg-type]
    params = dict(cohort=cohort, n_subjects=n_subjects, n_sites=n_sites, n_external_sites=n_external_sites,
                  shape=list(shape), seed=seed, layout=layout, generator_version=GENERATOR_VERSION,
                  voxel_size_mm=[round(float(v), 4) for v in voxel_sizes(anat.affine)])  # fmt: skip
    with atomic_path(out) as tmp:
        if layout == "kit":
            from medssl.data.kit_writer import write_kit_layout
            from medssl.data.openbhb import open_hf

            hf = tmp.parent / "hf"
            _write_hf(table, anat, seed, hf)
            masks = {"vbm": anat.gm > 0.05, "quasiraw": anat.brain > 0.5}
            write_kit_layout(open_hf(hf, "vbm"), tmp, quasiraw=open_hf(hf, "quasiraw"), masks=masks,
                             affine=anat.affine)  # fmt: skip
        elif layout == "hf":
            _write_hf(table, anat, seed, tmp)
        else:
            _write_nifti(table, anat, seed, tmp)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=2) + "\n")
    return out


def default_cache_dir() -> Path:
    """``$MEDSSL_CACHE`` or ``~/.cache/medssl``."""
    return Path(os.environ.get("MEDSSL_CACHE") or Path.home() / ".cache" / "medssl").expanduser()


def ensure_synthetic(
    cache_dir: str | Path | None = None,
    n_subjects: int = 96,
    shape: tuple[int, int, int] = (32, 40, 32),
    seed: int = 0,
    cohort: str = "healthy",
) -> Path:
    """A synthetic cohort generated once: the embedded default (healthy, HF layout) or a clinical one
    (``cohort="scz"|"bd"|"asd"``, NIfTI + manifest).

    It has 6 training and 2 external sites (fewer when ``n_subjects`` is below 56).

    Returns:
        The cohort root inside ``cache_dir`` (default ``default_cache_dir()``), keyed by the arguments
        and the generator version, ready for ``open_cohort``.
    """
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    name = f"synthetic-v{GENERATOR_VERSION}-{cohort}-n{n_subjects}-{'x'.join(map(str, shape))}-seed{seed}"
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = root / name
    if not (root / "synthetic.json").is_file():
        n_ext = 2 if n_subjects >= 32 else 1
        n_sites = max(1, min(6, (n_subjects - 2 * n_ext) // 8))
        layout = "hf" if cohort == "healthy" else "nifti"
        make_synthetic_cohort(root, cohort, n_subjects, n_sites, n_ext, shape, seed, layout, overwrite=True)
    return root
