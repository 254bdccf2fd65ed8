"""Contrastive losses (one kernel-weighted InfoNCE core) and regularisers.

``build_loss(name, **kw)`` builds any registered loss; ``available_losses()`` lists them. Every loss is
called as ``loss(z1, z2, y=None, bias=None)`` (see ``shared/reference/losses.md``); the core losses also
take keyword-only ``queue_z``/``queue_y`` extra candidates.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medssl.losses import (  # noqa: F401 (registration side effects)
    barlow_twins,
    byol,
    dino,
    exp,
    fairkl,
    infonce,
    kernels,
    supcon,
    thr,
    vicreg,
    yaware,
)
from medssl.losses.combined import CombinedObjective
from medssl.losses.core import KernelInfoNCE
from medssl.losses.diagnostics import contrastive_diagnostics, suggest_sigma
from medssl.registry import LOSSES

__all__ = [
    "CombinedObjective",
    "KernelInfoNCE",
    "available_losses",
    "build_loss",
    "contrastive_diagnostics",
    "suggest_sigma",
]


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """The loss registered as ``name`` built with ``kwargs`` (``ConfigError`` names unknown keys)."""
    return LOSSES.build(name, **kwargs)


def available_losses() -> list[str]:
    """Names of the registered losses (infonce, dcl, supcon, eps_supinfonce, eps_supcon, yaware, thr, exp, fairkl)."""
    return LOSSES.names()
