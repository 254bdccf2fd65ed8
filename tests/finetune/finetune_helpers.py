"""Helpers of the finetune tests: pretraining manifests, tiny encoders, tiny CPU overrides."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import medssl.models  # noqa: F401  (registers tiny_cnn3d)
from medssl.models.encoder_io import save_encoder
from medssl.registry import BACKBONES

SHAPE = [16, 16, 16]


def write_pretrain_manifest(manifest: Path, name: str, *, same_ids: bool, study: str) -> Path:
    """A 6-scan "pretraining" manifest beside ``manifest`` reusing its images, ids changed unless ``same_ids``."""
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False).head(6)
    if not same_ids:
        table["participant_id"] = "pre" + table["participant_id"]
    table["study"], table["diagnosis"] = study, "control"
    out = manifest.parent / name
    table.to_csv(out, index=False)
    return out


def make_encoder(folder: Path, cohort: str | None, seed: int = 0) -> Path:
    """A random ``tiny_cnn3d`` (width 4) saved as ``folder/encoder.pt`` with a card naming ``cohort``."""
    import torch

    torch.manual_seed(seed)
    card = {"backbone": {"name": "tiny_cnn3d", "width": 4}, "input_shape": SHAPE, "modality": "vbm",
            "preprocessing": {"shape": SHAPE, "resize": "crop_pad", "normalize": "zscore"}}
    if cohort is not None:
        card["cohort"] = cohort
    save_encoder(folder / "encoder.pt", BACKBONES.build("tiny_cnn3d", width=4), card)
    return folder / "encoder.pt"


def overrides(manifest: Path, out: Path, *extra: str) -> list[str]:
    """Tiny CPU settings for ``configs/finetune/scz.yaml``."""
    return [f"data.source={manifest}", "model={name: tiny_cnn3d, width: 4}", "train.epochs=2",
            "train.batch_size=4", "train.precision=fp32", "train.device=cpu", "train.patience=5",
            "finetune.val_fraction=0.25", f"out={out}", *extra]
