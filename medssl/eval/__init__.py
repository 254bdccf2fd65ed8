"""Evaluation of frozen encoders: challenge-identical probes, scores, CV folds, ComBat, site-effect report.

Importing this package registers the probes in ``medssl.registry.PROBES``. The pipeline that ties these
together is ``medssl.pipelines.evaluate.evaluate`` (``medssl evaluate``).
"""

from __future__ import annotations

from medssl.eval import probes  # noqa: F401  (registers openbhb_age, openbhb_site and the alternatives)
from medssl.eval.combat import ComBat
from medssl.eval.encoder import challenge_metrics, evaluate_encoder
from medssl.eval.cv import Fold, check_fold, fixed_fold, leave_sites_out, make_folds, site_stratified_kfold
from medssl.eval.features import Embedder, extract_features
from medssl.eval.frozen import FrozenWeightsError, assert_frozen, state_digest
from medssl.eval.metrics import (
    CHALLENGE_SCORE_VERSION,
    alignment,
    balanced_accuracy,
    challenge_score,
    mae,
    rmse,
    roc_auc,
    uniformity,
)
from medssl.eval.protocol import per_site_table, score_fold

__all__ = [
    "CHALLENGE_SCORE_VERSION",
    "ComBat",
    "Embedder",
    "Fold",
    "FrozenWeightsError",
    "alignment",
    "assert_frozen",
    "balanced_accuracy",
    "challenge_score",
    "challenge_metrics",
    "check_fold",
    "evaluate_encoder",
    "extract_features",
    "fixed_fold",
    "leave_sites_out",
    "mae",
    "make_folds",
    "per_site_table",
    "rmse",
    "roc_auc",
    "score_fold",
    "site_stratified_kfold",
    "state_digest",
    "uniformity",
]
