"""Momentum (EMA) teachers: frozen copies, the EMA update and the cosine momentum schedule.

Used by BYOL (target network), DINO (teacher) and MoCo (key encoder). The update follows
BYOL eq. (1) / DINO eq. (22) of the seed lecture: ``xi <- m * xi + (1 - m) * theta``.

References:
    - [0] Grill et al., BYOL, NeurIPS 2020, https://arxiv.org/abs/2006.07733
    - [1] Caron et al., DINO, ICCV 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def deactivate_requires_grad(module: nn.Module) -> nn.Module:
    """Freeze every parameter of ``module`` (it is updated by EMA, never by the optimiser)."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep, frozen copy of ``module`` to serve as an EMA teacher (same initial weights)."""
    return deactivate_requires_grad(copy.deepcopy(module))


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA of the parameters: ``target <- momentum * target + (1 - momentum) * online``.

    Floating-point buffers (BatchNorm running statistics) are copied from ``online`` so the teacher
    evaluates with current statistics (the teacher runs in train mode during pretraining, where BN
    uses batch statistics anyway); integer buffers (``num_batches_tracked``) are copied too.

    Raises:
        ValueError: ``momentum`` outside [0, 1] or modules with different parameter lists.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    online_params = list(online.parameters())
    target_params = list(target.parameters())
    if len(online_params) != len(target_params):
        raise ValueError("online and target modules have different numbers of parameters")
    for p_target, p_online in zip(target_params, online_params):
        p_target.mul_(momentum).add_(p_online.detach(), alpha=1.0 - momentum)
    for b_target, b_online in zip(target.buffers(), online.buffers()):
        b_target.copy_(b_online)


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine ramp from ``start`` (step 0) to ``end`` (step ``total_steps``).

    ``value = end - (end - start) * (cos(pi * step / total_steps) + 1) / 2`` (BYOL's momentum
    schedule tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 with start=tau_base, end=1).
    ``step`` is clamped to [0, total_steps]; ``total_steps <= 0`` returns ``end``.
    """
    if total_steps <= 0:
        return end
    progress = min(max(step, 0), total_steps) / total_steps
    return end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear ramp from ``start`` to ``end`` over ``warmup_steps``, then constant ``end``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps
