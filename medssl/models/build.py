"""Build backbones and heads by name: what configs do, for a notebook or a script."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medssl.registry import BACKBONES, HEADS


def available_backbones() -> list[str]:
    """The registered backbone names (``tiny_cnn3d``, ``resnet18_3d``, ``densenet121_3d``, ...)."""
    return BACKBONES.names()


def build_backbone(name: str, *, activation_checkpointing: bool = False, **kwargs: Any) -> nn.Module:
    """The backbone ``name``: ``(B, C, D, H, W) -> (B, F)`` with ``num_features = F``.

    Unknown keyword arguments are refused (``ConfigError`` naming the key and the accepted ones);
    ``activation_checkpointing`` is passed to the backbones that support it, ignored by the others.

    Examples:
        >>> import torch
        >>> net = build_backbone("tiny_cnn3d", width=4)
        >>> net(torch.zeros(2, 1, 16, 16, 16)).shape == (2, net.num_features)
        True
    """
    factory = BACKBONES.get(name)
    if activation_checkpointing and "activation_checkpointing" in inspect.signature(factory).parameters:
        kwargs.setdefault("activation_checkpointing", True)
    return BACKBONES.build(name, **kwargs)


def build_head(name: str, in_dim: int, **kwargs: Any) -> nn.Module:
    """The projection head ``name``: ``(B, in_dim) -> (B, d)``; ``"none"`` is the identity.

    Examples:
        >>> import torch
        >>> build_head("mlp", 32, hidden_dims=[16], out_dim=8)(torch.zeros(4, 32)).shape
        torch.Size([4, 8])
    """
    if name == "none":
        return nn.Identity()
    return HEADS.build(name, in_dim=in_dim, **kwargs)
