"""Scores of the OpenBHB challenge and representation diagnostics.

Regression/classification scores are thin wrappers over ``sklearn.metrics`` so every number in a
report is computed the way the RAMP server computes it (``problem.py`` of the kit). Alignment and
uniformity reuse ``medssl.losses.diagnostics`` (the training-time monitors) on float64 numpy input. The challenge
score is ``mae_external * bacc_site ** 0.3`` (kit commit ``b5defb4``): BAcc as a fraction in [0, 1],
lower is better, and the site term rewards representations from which the site cannot be decoded.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

from medssl.losses import diagnostics

CHALLENGE_SCORE_VERSION = "openbhb-b5defb4: mae_external * bacc_site ** 0.3"
"""Stored next to every challenge score; the kit changed its formula twice in 2022."""


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error ``mean |y - y_hat|``."""
    return float(skm.mean_absolute_error(y_true, y_pred))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error ``sqrt(mean (y - y_hat)^2)``."""
    return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall, a fraction in [0, 1]; chance is ``1 / n_classes``."""
    return float(skm.balanced_accuracy_score(y_true, y_pred))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC; ``y_score`` is (n,) for binary labels or (n, K) probabilities (one-vs-rest, macro)."""
    y_score = np.asarray(y_score)
    if y_score.ndim == 2 and y_score.shape[1] > 2:
        return float(skm.roc_auc_score(y_true, y_score, multi_class="ovr"))
    if y_score.ndim == 2:
        y_score = y_score[:, 1]
    return float(skm.roc_auc_score(y_true, y_score))


def challenge_score(mae_external: float, bacc_site: float) -> float:
    """OpenBHB challenge score ``mae_external * bacc_site ** 0.3`` (lower is better).

    Args:
        mae_external: age MAE in years on sites unseen in training.
        bacc_site: site balanced accuracy on the internal test, as a fraction (0.052, not 5.2).

    Raises:
        ValueError: ``bacc_site`` outside [0, 1] (a percentage was probably passed).
    """
    if not 0.0 <= bacc_site <= 1.0:
        raise ValueError(f"bacc_site={bacc_site} must be a fraction in [0, 1], not a percentage")
    return float(mae_external * bacc_site**0.3)


def alignment(z1: np.ndarray | torch.Tensor, z2: np.ndarray | torch.Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola (2020) alignment ``mean_i ||f_i - g_i||^alpha`` of L2-normalised pairs (lower = aligned).

    Args:
        z1, z2: (N, F) embeddings of the two members of N positive pairs (row i with row i).
    """
    return float(diagnostics.alignment(_tensor(z1), _tensor(z2), alpha))


def uniformity(z: np.ndarray | torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola (2020) uniformity ``log mean_{i<j} exp(-t ||f_i - f_j||^2)`` (lower = more uniform).

    Args:
        z: (N, F) embeddings, N >= 2; L2-normalised first.
    """
    if len(z) < 2:
        raise ValueError("uniformity needs at least two embeddings")
    return float(diagnostics.uniformity(_tensor(z), t))


def _tensor(z: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(z), dtype=torch.float64)
