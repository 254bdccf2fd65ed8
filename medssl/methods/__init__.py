"""Training methods: how a batch becomes a loss (siamese contrastive, BYOL, DINO, ...)."""

from __future__ import annotations

from medssl.methods import (  # noqa: F401  (registration side effects)
    barlow_twins,
    byol,
    classifier,
    dino,
    genesis,
    moco,
    siamese,
    simsiam,
    supervised,
    vae,
    vicreg,
)
from medssl.methods.base import Method
from medssl.methods.build import build_method

__all__ = ["Method", "build_method"]
