"""Backbones (3D encoders), projection heads and encoder files."""

from __future__ import annotations

from medssl.models import tiny  # noqa: F401  (registers tiny_cnn3d)
from medssl.models.encoder_io import load_encoder, save_encoder  # noqa: F401
