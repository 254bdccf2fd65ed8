"""Training methods: how a batch becomes a loss (siamese contrastive, BYOL, DINO, ...)."""

from __future__ import annotations

from medssl.methods import siamese  # noqa: F401
