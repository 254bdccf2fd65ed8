"""Fixtures: tiny kit-layout cohorts (hand-made, and medssl's synthetic one) and tiny exported encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import nibabel
import numpy as np
import pandas as pd
import pytest
import torch

from medssl.models import save_encoder
from medssl.registry import BACKBONES
from medssl.submit.check import MASK_FILES
from medssl.submit.export import export_openbhb

VBM_SHAPE = (14, 17, 14)
QUASIRAW_SHAPE = (18, 20, 18)
EXTRA_COLUMNS = 5  # stands for the xhemi/ROI blocks that follow vbm and quasiraw in a kit row


def _masks(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A float TPM (thresholded > 0.05 by the kit) and an int16 brain template (> 0)."""
    tpm = rng.uniform(0, 1, VBM_SHAPE).astype(np.float32)
    tpm[:2] = 0.04  # below the 0.05 threshold
    brain = np.zeros(QUASIRAW_SHAPE, np.int16)
    inner = (QUASIRAW_SHAPE[0] - 4, QUASIRAW_SHAPE[1] - 6, QUASIRAW_SHAPE[2] - 4)
    brain[2:-2, 3:-3, 2:-2] = rng.integers(1, 100, inner)
    return {"VBM_MASK": tpm, "QUASIRAW_MASK": brain}


def _rows(rng: np.random.Generator, masks: dict[str, np.ndarray], ages: np.ndarray) -> np.ndarray:
    """Kit rows: masked vbm voxels, masked quasiraw voxels, extra columns; intensities drift with age."""
    vbm, quasi = masks["VBM_MASK"] > 0.05, masks["QUASIRAW_MASK"] > 0
    n = len(ages)
    blocks = [
        rng.normal(0, 1, (n, vbm.sum())) + 0.05 * ages[:, None],
        rng.normal(0, 1, (n, quasi.sum())) * (1 + 0.02 * ages[:, None]),
        rng.normal(0, 1, (n, EXTRA_COLUMNS)),
    ]
    return np.concatenate(blocks, axis=1).astype(np.float32)


def write_test_kit(root: Path, seed: int = 0) -> Path:
    """Kit root with data/{train,test}.{npy,tsv} (30 train rows on 3 sites, 9 internal + 6 external) + masks."""
    rng = np.random.default_rng(seed)
    masks = _masks(rng)
    (root / "data").mkdir(parents=True)
    for env, array in masks.items():
        nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), root / MASK_FILES[env])
    train = pd.DataFrame({"age": rng.uniform(6, 80, 30).round(1), "site": np.repeat([0, 1, 2], 10), "split": "train"})
    test = pd.DataFrame({
        "age": rng.uniform(6, 80, 15).round(1),
        "site": [0, 1, 2] * 3 + [np.nan] * 6,
        "split": ["internal_test"] * 9 + ["external_test"] * 6,
    })
    for name, table in (("train", train), ("test", test)):
        np.save(root / "data" / f"{name}.npy", _rows(rng, masks, table["age"].to_numpy()))
        table.insert(0, "participant_id", [f"{name}{i:03d}" for i in range(len(table))])
        table.to_csv(root / "data" / f"{name}.tsv", sep="\t", index=False)
    return root


def save_test_encoder(folder: Path, name: str, input_shape: tuple[int, int, int], modality: str = "vbm",
                      resize: str = "crop_pad", cohort_shape: tuple[int, int, int] | None = None,
                      **kwargs: object) -> Path:
    """Save a randomly initialised backbone (with non-trivial BatchNorm statistics) as RUN/encoder.pt.

    The card also holds what ``medssl pretrain`` records about where it ran: the cohort folder, the run
    folder inside the config (absolute paths) and ``cohort_shape`` (default: ``input_shape``).
    """
    torch.manual_seed(0)
    backbone = BACKBONES.build(name, in_channels=1, **kwargs)
    for m in backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    card = {
        "backbone": {"name": name, "in_channels": 1, **kwargs},
        "input_shape": list(input_shape),
        "modality": modality,
        "preprocessing": {"shape": list(input_shape), "resize": resize, "normalize": "zscore"},
        "cohort_shape": list(cohort_shape or input_shape),
        "cohort": str(folder.parent / "cohort"),
        "method": "siamese",
        "loss": {"name": "yaware", "sigma": 2.0, "label": "age"},
        "config": {"data": {"source": str(folder.parent / "cohort")}, "out": str(folder)},
    }
    save_encoder(folder / "encoder.pt", backbone, card)
    return folder


@pytest.fixture(scope="session")
def make_encoder() -> Callable[..., Path]:
    """``make_encoder(folder, name, input_shape, modality="vbm", resize="crop_pad", **kwargs)`` -> run folder."""
    return save_test_encoder


@pytest.fixture(scope="session")
def kit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_kit(tmp_path_factory.mktemp("kit"))


@pytest.fixture(scope="session")
def synthetic_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """medssl's own synthetic cohort in the kit layout (``medssl synth --layout kit``), 16x20x16 volumes."""
    from medssl.data import make_synthetic_cohort

    return make_synthetic_cohort(tmp_path_factory.mktemp("synth") / "kit", n_subjects=40, n_sites=3,
                                 n_external_sites=1, shape=(16, 20, 16), layout="kit")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_test_encoder(tmp_path_factory.mktemp("run"), "tiny_cnn3d", (16, 16, 16), width=4)


@pytest.fixture(scope="session")
def tiny_submission(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """The tiny run (16^3, never on the challenge's grid) exported on purpose, for the synthetic kits."""
    return export_openbhb(tiny_run, tmp_path_factory.mktemp("subs") / "tiny", allow_grid_mismatch=True)
