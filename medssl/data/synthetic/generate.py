"""``make_synthetic_cohort`` and ``ensure_synthetic``: write a synthetic cohort in a real layout.

Layouts: ``hf`` (OpenBHB HuggingFace: ``participants.tsv`` + per-subject ``(1, 1, D, H, W)`` ``.npy`` for vbm
and quasiraw, masks in ``resource/``; float32, which every reader of the layout accepts, where OpenBHB
ships float64), ``nifti`` (``images/*.nii.gz`` + ``manifest_vbm.csv`` / ``manifest_quasiraw.csv``) and
``kit`` (challenge kit, via ``write_kit_layout``). Output is built in a temporary folder and renamed
(atomic); an existing output is refused unless ``overwrite``.

Subjects are simulated in batches on ``device`` (``simulate.simulate_batch``); on CUDA each batch is
copied to pinned host memory while the next one is computed, and files are written by a thread pool.
Everything is a function of ``seed``: the same arguments give identical files on the same device; the
batch size and (on a CPU, where each worker runs torch on one thread) the thread count change nothing.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from nibabel.affines import voxel_sizes
from threadpoolctl import threadpool_limits

from medssl.data.kit import MASK_FILES
from medssl.data.kit_writer import write_kit_layout
from medssl.data.openbhb import open_hf
from medssl.data.synthetic.anatomy import Anatomy, load_anatomy
from medssl.data.synthetic.design import COHORTS, design_cohort, get_preset
from medssl.data.synthetic.simulate import (
    MODALITIES,
    Scan,
    coarse_grid,
    device_anatomy,
    draw_scan,
    draw_site,
    simulate_batch,
)
from medssl.errors import ConfigError
from medssl.utils.device import resolve_device
from medssl.utils.io import atomic_path, ensure_writable

GENERATOR_VERSION = 3
LAYOUTS = ("hf", "nifti", "kit")
HF_NAMES = {"vbm": "preproc-cat12vbm_desc-gm_T1w", "quasiraw": "preproc-quasiraw_T1w"}
BATCH_VOXELS = {"cpu": 2**18, "cuda": 2**26}  # default batch: this many voxels (CPU: per worker thread)
RING = 3  # CUDA: batches in flight between the device and the writers (pinned host buffers)


def resolve_synth_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` or ``cuda:K`` as given.

    Raises:
        ConfigError: an unknown device, or CUDA asked for where torch sees none.
    """
    try:
        dev = resolve_device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} for the synthetic cohort; use auto, cpu or cuda") from exc
    if dev.type not in BATCH_VOXELS:
        raise ConfigError(f"device {device!r} is not supported by the synthetic generator; use auto, cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch sees no CUDA device here; use --device cpu (or auto)")
    return dev


def default_batch_size(shape: Sequence[int], device: torch.device) -> int:
    """``BATCH_VOXELS[device]`` worth of subjects, from 1 to 64."""
    return max(1, min(64, BATCH_VOXELS[device.type] // int(np.prod(shape))))


def _write_masks(anat: Anatomy, folder: Path) -> None:
    """Kit-named mask files from the template: GM TPM (vbm) and skull-stripped T1 (quasiraw)."""
    folder.mkdir(parents=True, exist_ok=True)
    maps = {"vbm": anat.gm, "quasiraw": np.where(anat.brain > 0.5, np.maximum(anat.t1, 1e-3), 0.0)}
    for modality, arr in maps.items():
        nib.save(nib.Nifti1Image(arr.astype(np.float32), anat.affine), folder / MASK_FILES[modality][0])


def _scans(table: pd.DataFrame, shape: tuple[int, int, int], seed: int, preset: str) -> Iterator[Scan]:
    """Each subject's host-side draws; per-site scanners and per-subject streams derive from ``seed``."""
    grid, prior = coarse_grid(shape), get_preset(preset)
    site_seq, subject_seq = np.random.SeedSequence([seed, 1]), np.random.SeedSequence([seed, 2])
    sites = [draw_site(np.random.default_rng(s), prior, grid) for s in site_seq.spawn(int(table["site"].max()) + 1)]
    for row, sub_seq in zip(table.itertuples(), subject_seq.spawn(len(table))):
        yield draw_scan(np.random.default_rng(sub_seq), row.age, row.tiv, row.diagnosis, row.severity,
                        sites[row.site], grid)  # fmt: skip


class _PinnedRing:
    """CUDA -> host staging: ``RING`` pinned buffers per modality, reused once their writers are done."""

    def __init__(self, batch_size: int, shape: tuple[int, int, int], modalities: Sequence[str]) -> None:
        self.slots = [{m: torch.empty((batch_size, *shape), pin_memory=True) for m in modalities} for _ in range(RING)]
        self.events = [torch.cuda.Event() for _ in range(RING)]
        self.writers: list[list[Future]] = [[] for _ in range(RING)]
        self.next = 0

    def stage(self, volumes: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        """Queue non-blocking copies of a batch into the next free slot: ``(host views, slot)``."""
        k, self.next = self.next, (self.next + 1) % RING
        for future in self.writers[k]:
            future.result()
        host = {}
        for m, v in volumes.items():
            host[m] = self.slots[k][m][: len(v)]
            host[m].copy_(v, non_blocking=True)
        self.events[k].record()
        return host, k

    def release(self, rows: range, host: dict[str, torch.Tensor], slot: int,
                hand_over: Callable[[range, dict[str, torch.Tensor]], list[Future]]) -> None:  # fmt: skip
        """Wait for a staged batch's copy, give it to the writers and remember them for the slot."""
        self.events[slot].synchronize()
        self.writers[slot] = hand_over(rows, host)


def _simulate_into(table: pd.DataFrame, shape: tuple[int, int, int], seed: int, preset: str, device: torch.device,
                   modalities: Sequence[str], batch_size: int, pool: ThreadPoolExecutor,
                   write: Callable[[int, dict[str, np.ndarray]], float | None]) -> list[float | None]:  # fmt: skip
    """Simulate every subject in batches and hand each one's host volumes ``{modality: (D, H, W)}`` to
    ``write(row, volumes)`` on ``pool``; returns the writers' results in table order.

    CUDA: the main thread draws and queues batch after batch; batch k goes to the writers once batch
    k+1 is queued, through a pinned buffer (``_PinnedRing``) that it was copied into without blocking,
    so host draws, device work and writes overlap. CPU: one batch per job on a pool of as many workers
    as torch has threads, each running torch on one thread (many short kernels scale badly with threads,
    worst on a shared machine; whole subjects in parallel do not; and one thread makes the files
    independent of the thread count). numpy's BLAS runs on one thread meanwhile: the host draws are
    many small products, which threads only slow down.
    """
    anat = device_anatomy(shape, str(device))
    scans = _scans(table, shape, seed, preset)
    batches = ((range(start, min(start + batch_size, len(table))), list(itertools.islice(scans, batch_size)))
               for start in range(0, len(table), batch_size))  # fmt: skip
    results: list[Future] = []

    def hand_over(rows: range, volumes: dict[str, torch.Tensor]) -> list[Future]:
        futures = [pool.submit(write, row, {m: v[i].numpy() for m, v in volumes.items()}) for i, row in enumerate(rows)]
        results.extend(futures)
        return futures

    with threadpool_limits(limits=1, user_api="blas"):
        if device.type == "cuda":
            with torch.cuda.device(device):  # events and copies on the generator's device's stream
                ring, pending = _PinnedRing(batch_size, shape, modalities), []
                for rows, batch in batches:
                    pending.append((rows, *ring.stage(simulate_batch(anat, batch, modalities))))
                    if len(pending) > 1:  # the previous batch, copied while this one was queued
                        ring.release(*pending.pop(0), hand_over)
                for staged in pending:
                    ring.release(*staged, hand_over)
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as compute:
                    jobs: collections.deque = collections.deque()
                    written = 0
                    for rows, batch in batches:
                        jobs.append((rows, compute.submit(simulate_batch, anat, batch, modalities)))
                        while len(jobs) > threads:  # the oldest job's volumes go to the writers
                            rows_done, job = jobs.popleft()
                            hand_over(rows_done, job.result())
                        while written < len(results) - 2 * threads * batch_size:  # bound the unwritten volumes
                            results[written].result()
                            written += 1
                    for rows_done, job in jobs:
                        hand_over(rows_done, job.result())
            finally:
                torch.set_num_threads(threads)
    return [future.result() for future in results]


def _write_hf(table: pd.DataFrame, anat: Anatomy, root: Path, simulate: Callable) -> None:
    voxel_cm3 = abs(np.linalg.det(anat.affine[:3, :3])) / 1000.0
    folders = [root / ("train" if split == "train" else "val") / "derivatives" / f"sub-{pid}" / "ses-1"
               for pid, split in zip(table["participant_id"], table["split"])]  # fmt: skip

    def write(row: int, volumes: dict[str, np.ndarray]) -> float | None:
        folders[row].mkdir(parents=True)
        for modality, volume in volumes.items():
            name = f"sub-{table['participant_id'].iat[row]}_{HF_NAMES[modality]}.npy"
            np.save(folders[row] / name, volume[None, None])
        return round(float(volumes["vbm"].sum(dtype=np.float64) * voxel_cm3), 2) if "vbm" in volumes else None

    gmv = simulate(write)
    table = table.assign(gmv=gmv) if all(g is not None for g in gmv) else table
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_masks(anat, root / "resource")


def _write_nifti(table: pd.DataFrame, anat: Anatomy, root: Path, simulate: Callable,
                 modalities: Sequence[str]) -> None:  # fmt: skip
    (root / "images").mkdir(parents=True)
    rel = {m: [f"images/sub-{pid}_{HF_NAMES[m]}.nii.gz" for pid in table["participant_id"]] for m in modalities}

    def write(row: int, volumes: dict[str, np.ndarray]) -> None:
        for modality, volume in volumes.items():
            nib.save(nib.Nifti1Image(volume, anat.affine), root / rel[modality][row])

    simulate(write)
    cols = ["participant_id", "study", "site", "age", "sex", "diagnosis", "tiv", "split"]
    for modality, paths in rel.items():
        frame = table[cols].assign(session="1")
        frame.insert(1, "path", paths)
        frame.to_csv(root / f"manifest_{modality}.csv", index=False)
    _write_masks(anat, root / "resource")


def make_synthetic_cohort(
    out: str | Path,
    cohort: str = "healthy",
    n_subjects: int = 96,
    n_sites: int | None = None,
    n_external_sites: int | None = None,
    shape: tuple[int, int, int] = (32, 40, 32),
    seed: int = 0,
    layout: str | None = None,
    overwrite: bool = False,
    preset: str = "standard",
    device: str = "cpu",
    modalities: Sequence[str] = MODALITIES,
    batch_size: int | None = None,
) -> Path:
    """Generate a synthetic cohort (see docs/data.md) and write it to ``out``; returns ``out``.

    Args:
        cohort: ``healthy`` (controls over the lifespan) or a clinical cohort ``scz``/``bd``/``asd``
            (cases and controls at every site).
        n_subjects: total number of subjects (scans).
        n_sites: training sites; ``n_external_sites`` more sites appear only in ``external_test``
            (defaults: the preset's, 6 and 2 for ``standard``, 12 and 4 for ``hard``).
        shape: ``(D, H, W)`` of the volumes.
        layout: ``hf`` (default for healthy), ``nifti`` (default for clinical) or ``kit``.
        preset: ``standard`` or ``hard`` (``design.PRESETS``).
        device: where the volumes are simulated: ``cpu``, ``cuda`` or ``auto``.
        modalities: the images to write (``vbm``, ``quasiraw``); ``kit`` needs both.
        batch_size: subjects simulated at once (default: by voxels, ``BATCH_VOXELS``); output does not
            depend on it.
    """
    layout = layout or ("hf" if cohort == "healthy" else "nifti")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if cohort not in COHORTS:
        raise ConfigError(f"unknown synthetic cohort {cohort!r}; use one of {', '.join(COHORTS)}")
    prior = get_preset(preset)
    n_sites = prior.n_sites if n_sites is None else n_sites
    n_external_sites = prior.n_external_sites if n_external_sites is None else n_external_sites
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"shape must be three sizes >= 8 (D H W), got {shape}")
    if not modalities or set(modalities) - set(MODALITIES):
        raise ConfigError(f"modalities must be some of {', '.join(MODALITIES)}, got {list(modalities)}")
    modalities = tuple(m for m in MODALITIES if m in modalities)
    if layout == "kit" and len(modalities) < len(MODALITIES):
        raise ConfigError("the kit layout holds both vbm and quasiraw; keep both modalities or use layout hf")
    dev = resolve_synth_device(device)
    batch_size = batch_size or default_batch_size(shape, dev)
    out = Path(out)
    if not overwrite:
        ensure_writable(out, overwrite=False)
    elif out.is_file():
        out.unlink()
    table = design_cohort(cohort, n_subjects, n_sites, n_external_sites, np.random.default_rng([seed, 0]), preset)
    anat = load_anatomy(shape)  # type: ignore[arg-type]
    params = dict(cohort=cohort, preset=preset, n_subjects=n_subjects, n_sites=n_sites,
                  n_external_sites=n_external_sites, shape=list(shape), seed=seed, layout=layout,
                  modalities=list(modalities), device=dev.type, generator_version=GENERATOR_VERSION,
                  voxel_size_mm=[round(float(v), 4) for v in voxel_sizes(anat.affine)])  # fmt: skip
    workers = min(8, os.cpu_count() or 1) if dev.type == "cuda" else 2
    with atomic_path(out) as tmp, ThreadPoolExecutor(workers, thread_name_prefix="synth-write") as pool:

        def simulate(write: Callable) -> list:
            return _simulate_into(  # type: ignore[arg-type]
                table, shape, seed, preset, dev, modalities, batch_size, pool, write)

        try:
            if layout == "kit":
                hf = tmp.parent / "hf"
                _write_hf(table, anat, hf, simulate)
                masks = {"vbm": anat.gm > 0.05, "quasiraw": anat.brain > 0.5}
                write_kit_layout(open_hf(hf, "vbm"), tmp, quasiraw=open_hf(hf, "quasiraw"), masks=masks,
                                 affine=anat.affine)  # fmt: skip
            elif layout == "hf":
                _write_hf(table, anat, tmp, simulate)
            else:
                _write_nifti(table, anat, tmp, simulate, modalities)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # no writer left in the folder atomic_path removes
            raise
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
