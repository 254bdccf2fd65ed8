"""A frozen encoder on a cohort -> the OpenBHB challenge's metrics, in memory (no files written).

``evaluate_encoder`` is what ``medssl evaluate`` computes before its report: every scan embedded once
(eval mode, no grad), the challenge's probes fitted per fold on the train rows, the fold means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medssl.data import CohortDataset, open_cohort
from medssl.data.cohort import Cohort
from medssl.errors import DataError
from medssl.eval.cv import Fold, make_folds
from medssl.eval.features import extract_features
from medssl.eval.probes import CHALLENGE_PROBES
from medssl.eval.protocol import average_folds, score_fold


def cohort_folds(cohort: Cohort, cv: str = "fixed", cv_kwargs: dict[str, Any] | None = None) -> list[Fold]:
    """The folds of ``cv``: ``fixed`` (the cohort's splits), ``site_kfold`` (whose external sites default to
    the cohort's sites unseen in ``train``) or ``leave_sites_out``; options in ``cv_kwargs``."""
    cv_kwargs = dict(cv_kwargs or {})
    if cv == "site_kfold":  # the cohort's unseen sites stay external unless told otherwise
        cv_kwargs.setdefault("external_sites", list(cohort.unseen_sites))
    return make_folds(cohort.table, cv, **cv_kwargs)


def challenge_metrics(X: np.ndarray, meta: pd.DataFrame, folds: list[Fold], n_jobs: int | None = None,
                      age_probe: str = CHALLENGE_PROBES["age"], site_probe: str = CHALLENGE_PROBES["site"],
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], pd.DataFrame]:
    """``(metrics, per-fold metrics, predictions)`` of features ``X`` ``(N, F)``: the probes fitted on each
    fold's train rows; the metrics are the fold means (``mae_internal``, ``mae_external``, ``bacc_site``,
    ``challenge_score``, ...)."""
    if not np.isfinite(X).all():
        raise DataError("the encoder produced NaN/inf features; check the weights and the input intensities")
    scored = [score_fold(X, meta, fold, age_probe, site_probe, n_jobs) for fold in folds]
    per_fold = [metrics for metrics, _ in scored]
    predictions = pd.concat([p.assign(fold=fold.name) for (_, p), fold in zip(scored, folds)], ignore_index=True)
    return average_folds(per_fold), per_fold, predictions


def evaluate_encoder(encoder: nn.Module, cohort: Cohort | str | Path, *, shape: list[int] | None = None,
                     resize: str = "crop_pad", cv: str = "fixed", cv_kwargs: dict[str, Any] | None = None,
                     batch_size: int = 8, device: str | torch.device = "auto", n_jobs: int | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """The challenge metrics of a frozen ``encoder`` ``(B, 1, D, H, W) -> (B, F)`` on ``cohort``.

    ``cohort`` is an opened cohort or anything ``open_cohort`` reads (an OpenBHB root, a manifest);
    volumes are cropped/padded (or resampled) to ``shape`` (default: as stored) and z-scored, as in
    pretraining. Returns the metrics dict (``mae_internal``, ``mae_external``, ``bacc_site``,
    ``site_chance``, ``challenge_score``, ...).

    Examples:
        >>> import tempfile
        >>> from medssl.data import make_synthetic_cohort
        >>> from medssl.models import build_backbone
        >>> folder = make_synthetic_cohort(tempfile.mkdtemp() + "/c", n_subjects=40, n_sites=3,
        ...                                n_external_sites=1, shape=(16, 16, 16), modalities=["vbm"])
        >>> metrics = evaluate_encoder(build_backbone("tiny_cnn3d", width=4), folder, device="cpu")
        >>> abs(metrics["challenge_score"] - metrics["mae_external"] * metrics["bacc_site"] ** 0.3) < 1e-9
        True
    """
    if not isinstance(cohort, Cohort):
        cohort = open_cohort(cohort)
    dataset = CohortDataset(cohort, shape=shape, resize=resize)
    X, meta = extract_features(encoder, dataset, device, batch_size, progress=progress)
    return challenge_metrics(X, meta, cohort_folds(cohort, cv, cv_kwargs), n_jobs)[0]
