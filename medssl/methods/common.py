"""Small pieces the methods share: predictor MLPs, the head's output size, argument checks."""

from __future__ import annotations

import torch
from torch import nn

from medssl.errors import ConfigError


def predictor_mlp(dim: int, hidden_dim: int) -> nn.Sequential:
    """BYOL/SimSiam predictor ``Linear(d, h) -> BN -> ReLU -> Linear(h, d)``: (B, d) -> (B, d)."""
    if dim < 1 or hidden_dim < 1:
        raise ValueError(f"predictor sizes must be >= 1, got dim={dim}, hidden_dim={hidden_dim}")
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, dim),
    )


@torch.no_grad()
def head_out_dim(head: nn.Module, in_features: int) -> int:
    """The output size d of ``head`` (B, in_features) -> (B, d): its ``out_dim`` attribute if it has
    one, else measured with one forward pass on zeros in eval mode (the training mode is restored)."""
    out_dim = getattr(head, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    was_training = head.training
    head.eval()
    try:
        param = next(head.parameters(), None)
        x = torch.zeros(2, in_features, device=param.device if param is not None else None)
        out = head(x)
    finally:
        head.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the projection head must map (B, F) to (B, d), got {tuple(out.shape)}")
    return int(out.shape[1])


def check_views(views: list[torch.Tensor], method: str, n: int = 2) -> None:
    """Raise ``ValueError`` unless at least ``n`` views are given."""
    if len(views) < n:
        raise ValueError(f"method {method!r} needs at least {n} views per batch, got {len(views)}")


def refuse_loss(loss: nn.Module | None, method: str, allowed: type | None = None) -> None:
    """Methods that own their objective accept no configured loss (or only ``allowed``)."""
    if loss is None or (allowed is not None and isinstance(loss, allowed)):
        return
    raise ConfigError(
        f"method {method!r} defines its own objective but got loss {type(loss).__name__}; "
        f"set 'loss: {{name: none}}' in the config"
        + (f" (or a {allowed.__name__})" if allowed is not None else "")
    )
