"""Tiny CPU fixtures for the method tests: a tiny_cnn3d encoder, an MLP head, a fixed 16^3 batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.models.tiny import TinyCNN3d

SHAPE = (16, 16, 16)
BATCH = 8


def tiny_backbone() -> TinyCNN3d:
    return TinyCNN3d(in_channels=1, width=4)  # num_features = 32


def tiny_head(in_dim: int = 32, out_dim: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, out_dim))


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(BATCH, 1, *SHAPE, generator=gen)
    image = image + torch.linspace(-1, 1, BATCH).view(BATCH, 1, 1, 1, 1)  # subject-level signal
    return {"image": image, "age": torch.linspace(20.0, 70.0, BATCH),
            "site": torch.arange(BATCH) % 2}


def make_views(image: torch.Tensor, n: int = 2) -> list[torch.Tensor]:
    """Random per-sample flips along the last axis plus Gaussian noise (sigma 0.1)."""
    views = []
    for _ in range(n):
        flip = (torch.rand(image.shape[0], device=image.device) < 0.5).view(-1, 1, 1, 1, 1)
        views.append(torch.where(flip, image.flip(-1), image) + 0.1 * torch.randn_like(image))
    return views


class Tiny:
    """Factories the tests share (fixtures cannot be imported across test folders)."""

    shape = SHAPE
    backbone = staticmethod(tiny_backbone)
    head = staticmethod(tiny_head)
    views = staticmethod(make_views)


@pytest.fixture
def tiny() -> type[Tiny]:
    return Tiny
