"""Projection heads ``(B, in_dim) -> (B, out_dim)`` in ``HEADS``: ``mlp``, ``linear``, ``identity``.

Published heads (built by ``HEADS.build(name, in_dim=F, **kw)``):

- y-aware (Dufumier 2021), DenseNet121: ``mlp`` with ``in_dim=1024, hidden_dims=[512], out_dim=128``
  (Linear 1024->512, ReLU, Linear 512->128).
- L_exp (Barbano 2023), ResNet-18: ``mlp`` with ``in_dim=512, hidden_dims=[512], out_dim=128,
  l2_norm=True`` (Linear 512->512, ReLU, Linear 512->128, then z / ||z||_2).

The losses L2-normalise their inputs themselves, so ``l2_norm`` only matters to code that reads the
projections directly. State-dict keys: ``layers.{i}.weight/bias`` of one ``nn.Sequential``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medssl.registry import HEADS


class _Head(nn.Module):
    """``layers`` then optional row-wise L2 normalisation ``z / max(||z||_2, 1e-12)``."""

    def __init__(self, layers: list[nn.Module], out_dim: int, l2_norm: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.out_dim = out_dim
        self.l2_norm = l2_norm

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.layers(h)
        return F.normalize(z, dim=1) if self.l2_norm else z


@HEADS.register("mlp")
class MLPHead(_Head):
    """``[Linear -> (BatchNorm1d) -> ReLU] x len(hidden_dims) -> Linear(out_dim)`` (-> L2 norm).

    Args:
        in_dim: backbone features F.
        hidden_dims: widths of the hidden layers (``[]`` gives a single Linear).
        out_dim: projection size d.
        batch_norm: BatchNorm1d after each hidden Linear (SimCLR v2 style).
        l2_norm: normalise each output row to unit L2 norm.

    Shapes: ``(B, in_dim) -> (B, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int] = (512,),
        out_dim: int = 128,
        batch_norm: bool = False,
        l2_norm: bool = False,
    ) -> None:
        _check_dims(in_dim, out_dim, *hidden_dims)
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU(inplace=True))
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        super().__init__(layers, out_dim, l2_norm)


@HEADS.register("linear")
class LinearHead(_Head):
    """One ``Linear(in_dim, out_dim)`` (-> L2 norm). Shapes: ``(B, in_dim) -> (B, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int = 128, bias: bool = True, l2_norm: bool = False) -> None:
        _check_dims(in_dim, out_dim)
        super().__init__([nn.Linear(in_dim, out_dim, bias=bias)], out_dim, l2_norm)


@HEADS.register("identity")
class IdentityHead(_Head):
    """No projection: the loss sees the backbone features (-> L2 norm). ``(B, F) -> (B, F)``."""

    def __init__(self, in_dim: int, l2_norm: bool = False) -> None:
        _check_dims(in_dim)
        super().__init__([], in_dim, l2_norm)


def _check_dims(*dims: int) -> None:
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims):
        raise ValueError(f"head dimensions must be positive integers, got {list(dims)}")
