"""Baselines scored on the same folds as the encoder, so every number has context.

- ``raw_voxels``: the preprocessed volume average-pooled by an integer factor (the smallest that gives
  at most ``max_features`` voxels), flattened; the same challenge probes on top.
- ``raw_voxels_combat`` / ``encoder_combat``: those features harmonised by ``ComBat`` fitted on the
  train rows only (site + covariates age and sex when every train sex is known), then transformed
  label-free (training-mean covariates) for every row; sites unseen in training pass through unchanged
  (``unseen="grand_mean"``), so ComBat cannot reduce the external error (see ``medssl.eval.combat``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from medssl.errors import DataError
from medssl.eval.combat import ComBat
from medssl.eval.cv import Fold
from medssl.eval.protocol import score_fold


class RawVoxels(nn.Module):
    """``(B, 1, D, H, W) -> (B, prod(ceil(S / f)))``: average pooling by ``f`` (ceil mode), flattened.

    A parameter-free "encoder" so raw features go through the same ``extract_features`` loop.
    """

    def __init__(self, shape: Sequence[int], max_features: int = 4096) -> None:
        super().__init__()
        self.factor = next(f for f in range(1, max(shape) + 1) if math.prod(math.ceil(s / f) for s in shape)
                           <= max_features)
        self.num_features = math.prod(math.ceil(s / self.factor) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return nn.functional.avg_pool3d(x, f, f, ceil_mode=True, count_include_pad=False).flatten(1)


def combat_covariates(meta: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Covariates preserved by ComBat: age, plus sex (male = 1) when it is known for every given row."""
    cols, names = [meta.age.to_numpy(np.float64)], ["age"]
    if "sex" in meta and (meta.sex.to_numpy()[rows] >= 0).all():
        cols.append(meta.sex.to_numpy(np.float64))
        names.append("sex")
    return np.column_stack(cols), names


def harmonise(X: np.ndarray, meta: pd.DataFrame, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
    """ComBat fitted on ``fold.train``; every row transformed with training-mean covariates (label-free)."""
    C, names = combat_covariates(meta, fold.train)
    site = meta.site.to_numpy()
    combat = ComBat(unseen="grand_mean").fit(X[fold.train], site[fold.train], C[fold.train])
    out = combat.transform(X, site).astype(np.float32)
    info = {"combat_covariates": names, "combat_unseen_sites": "grand_mean (features left unchanged)",
            "combat_constant_features": int(combat.constant_.sum())}
    return out, info


def score_baselines(
    X_raw: np.ndarray, X_enc: np.ndarray, meta: pd.DataFrame, folds: list[Fold], n_jobs: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per-fold metrics of ``raw_voxels``, ``raw_voxels_combat`` and ``encoder_combat``.

    A ComBat row whose fit is impossible (a train site with a single scan) holds ``error`` instead.
    """
    out: dict[str, list[dict[str, Any]]] = {"raw_voxels": [], "raw_voxels_combat": [], "encoder_combat": []}
    for fold in folds:
        out["raw_voxels"].append(score_fold(X_raw, meta, fold, n_jobs=n_jobs)[0])
        for name, X in (("raw_voxels_combat", X_raw), ("encoder_combat", X_enc)):
            try:
                harmonised, info = harmonise(X, meta, fold)
            except DataError as exc:  # e.g. a train site with one scan: reported in the table, not skipped
                out[name].append({"fold": fold.name, "error": f"ComBat not applicable: {exc}"})
                continue
            out[name].append({**score_fold(harmonised, meta, fold, n_jobs=n_jobs)[0], **info})
    return out
