"""Backbones (3D encoders), projection heads and encoder files.

Importing this package registers ``tiny_cnn3d``, ``densenet121_3d``, ``resnet18_3d``, ``alexnet_3d``
in ``BACKBONES`` and ``mlp``, ``linear``, ``identity`` in ``HEADS``.
"""

from __future__ import annotations

from medssl.models import backbones, heads, tiny  # noqa: F401  (registration side effects)
from medssl.models.build import available_backbones, build_backbone, build_head
from medssl.models.encoder_io import load_encoder, save_encoder

__all__ = ["available_backbones", "build_backbone", "build_head", "load_encoder", "save_encoder"]
