"""Fitting one diagnosis classifier: engine-trained (``partial``/``full``) or a logistic head (``linear``).

Engine recipes train ``Classifier`` with ``medssl.engine.train.train_loop`` and stop early on the
validation AUC (patience in epochs); the weights of the best validation epoch are restored. The linear
recipe embeds the cohort once with the frozen encoder (``extract_features``) and fits a standardised
``LogisticRegression`` whose C is chosen by validation AUC.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medssl.config import TrainConfig
from medssl.engine.train import autocast_dtype, train_loop
from medssl.eval.metrics import roc_auc


class LabelledRows(Dataset):
    """Items of ``base`` at ``rows`` (repeats allowed, for oversampling) with ``"label"`` (int64) added."""

    def __init__(self, base: Dataset, rows: Sequence[int], labels: np.ndarray) -> None:
        self.base, self.rows, self.labels = base, np.asarray(rows, dtype=int), labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        return {**self.base[row], "label": torch.tensor(self.labels[row], dtype=torch.long)}


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn's "balanced" class weights ``w_k = N / (K * n_k)`` (a class absent from y is an error)."""
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"every class needs training rows, got counts {counts.tolist()}")
    return len(y) / (n_classes * counts)


def oversample(rows: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Repeat rows of the smaller classes (drawn with replacement) up to the largest class's count."""
    rng = np.random.default_rng(seed)
    y = labels[rows]
    top = np.bincount(y).max()
    extra = [rng.choice(rows[y == k], top - (y == k).sum()) for k in np.unique(y)]
    return np.concatenate([rows, *extra])


@torch.no_grad()
def predict_proba(method: nn.Module, data: Dataset, device: torch.device, batch_size: int,
                  precision: str = "fp32") -> np.ndarray:
    """Softmax class probabilities (N, K) of ``method.logits`` in eval mode (mode restored after)."""
    was_training = method.training
    method.eval()
    dtype = autocast_dtype(precision, device)
    out = []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = method.logits(batch["image"].to(device))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    method.train(was_training)
    return np.concatenate(out)


class EarlyStopping:
    """Epoch hook for ``train_loop``: validation AUC, best weights kept in memory, stop after patience.

    ``hook(epoch, method) -> {"val_auc": a, "stop": no improvement for `patience` epochs}``.
    """

    def __init__(self, val: LabelledRows, device: torch.device, batch_size: int, patience: int,
                 precision: str = "fp32") -> None:
        self.val, self.device, self.batch_size = val, device, batch_size
        self.patience, self.precision = patience, precision
        self.y = val.labels[val.rows]
        self.best, self.best_epoch, self.state = -np.inf, 0, None

    def __call__(self, epoch: int, method: nn.Module) -> dict[str, float]:
        proba = predict_proba(method, self.val, self.device, self.batch_size, self.precision)
        auc = roc_auc(self.y, proba[:, 1] if proba.shape[1] == 2 else proba)
        if auc > self.best:
            self.best, self.best_epoch = auc, epoch
            self.state = copy.deepcopy(method.state_dict())
        return {"val_auc": auc, "stop": epoch - self.best_epoch >= self.patience}


def fit_engine(
    method: nn.Module, train: Dataset, val: LabelledRows, cfg: TrainConfig, work_dir: Path,
    device: torch.device, patience: int, num_workers: int = 0,
) -> dict[str, Any]:
    """Train ``method`` with early stopping, restore its best validation weights; returns a summary.

    ``work_dir`` keeps the run's ``metrics.jsonl``; the engine's checkpoint is deleted afterwards.
    """
    stopper = EarlyStopping(val, device, cfg.batch_size, patience, cfg.precision)
    summary = train_loop(method, train, None, cfg, work_dir, device=device, n_views=1,
                         on_epoch_end=stopper, num_workers=num_workers, tensorboard=False)
    method.load_state_dict(stopper.state)
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    return {"epochs": summary["epoch"], "best_epoch": stopper.best_epoch, "val_auc": stopper.best}


def fit_logistic(
    X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, Cs: Sequence[float],
    balanced: bool, seed: int,
) -> tuple[Any, dict[str, Any]]:
    """``StandardScaler + LogisticRegression`` with C picked by validation AUC (first best on ties)."""
    best, best_auc, best_c = None, -np.inf, None
    for c in Cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(
            C=c, class_weight="balanced" if balanced else None, max_iter=5000, random_state=seed))
        model.fit(X, y)
        proba = model.predict_proba(X_val)
        auc = roc_auc(y_val, proba[:, 1] if proba.shape[1] == 2 else proba)
        if auc > best_auc:
            best, best_auc, best_c = model, auc, c
    return best, {"C": best_c, "val_auc": best_auc}
