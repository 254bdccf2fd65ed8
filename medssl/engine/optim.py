"""Optimisers and learning-rate schedules built from ``TrainConfig`` values (plain kwargs, no config)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict],
    name: str = "adam",
    lr: float = 1e-4,
    weight_decay: float = 5e-5,
    momentum: float = 0.9,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """Adam (L2 penalty, the published recipes), AdamW (decoupled decay) or SGD with momentum.

    ``fused=True`` selects the fused CUDA kernels (only when every parameter is on a GPU).
    """
    extra = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra)
    raise ValueError(f"unknown optimizer {name!r}; use adam, adamw or sgd")


def lr_factor(
    step: int,
    steps_per_epoch: int,
    total_steps: int,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    step_every: int = 10,
    step_gamma: float = 0.9,
) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    - linear warm-up over ``warmup_epochs`` (fractions allowed), then
    - ``constant``: 1; ``cosine``: 0.5 (1 + cos(pi t)) with t the post-warm-up progress in [0, 1];
      ``step``: ``step_gamma ** floor(epoch / step_every)`` (L_exp recipe: x0.9 every 10 epochs).
    """
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "step":
        return step_gamma ** (step // (steps_per_epoch * step_every))
    raise ValueError(f"unknown schedule {schedule!r}; use constant, cosine or step")
