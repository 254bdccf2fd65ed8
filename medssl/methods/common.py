"""Small pieces the methods share: predictor MLPs, the head's output size, argument checks."""

from __future__ import annotations

import torch
from torch import nn

from medssl.errors import ConfigError, DataError
from medssl.losses.combined import CombinedObjective


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
    """The output size d of ``head`` (B, in_features) -> (B, d).

    Its ``out_dim`` attribute if it has one, else measured with one forward pass on zeros in eval
    mode (the training mode is restored).
    """
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


def main_loss(loss: nn.Module | None) -> nn.Module | None:
    """The objective itself; a ``CombinedObjective`` (as the pipeline builds) holds it as ``.loss``."""
    return loss.loss if isinstance(loss, CombinedObjective) else loss


def refuse_loss(loss: nn.Module | None, method: str, allowed: type | None = None) -> None:
    """Methods that own their objective accept no configured loss (or only an ``allowed`` one,
    possibly inside a ``CombinedObjective`` with a regulariser)."""
    inner = main_loss(loss)
    if inner is None or (allowed is not None and isinstance(inner, allowed)):
        return
    choice = "set 'loss: {name: none}' in the config"
    if allowed is not None:
        choice = f"set 'loss: {{name: {method}}}' (or 'none' for the defaults) in the config"
    raise ConfigError(
        f"method {method!r} defines its own objective but the config gives loss "
        f"{type(inner).__name__}; {choice}"
    )


def as_output(value: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A loss value or a loss dict (``CombinedObjective``) as a step dict with ``"loss"``."""
    return dict(value) if isinstance(value, dict) else {"loss": value}


def check_input_shape(
    input_shape: tuple[int, int, int] | list[int] | None, method: str
) -> tuple[int, int, int]:
    """The (D, H, W) a reconstruction method decodes to; ``ConfigError`` when it is missing."""
    if input_shape is None or len(input_shape) != 3:
        raise ConfigError(
            f"method {method!r} needs the volume shape to build its decoder: set "
            f"'method: {{name: {method}, input_shape: [D, H, W]}}' equal to data.shape, got "
            f"{input_shape!r}"
        )
    return (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))


def check_batch_shape(x: torch.Tensor, shape: tuple[int, int, int], method: str) -> None:
    """``DataError`` when the batch volumes are not the shape the decoder was built for."""
    if tuple(x.shape[2:]) != shape:
        raise DataError(
            f"method {method!r} was built for volumes of shape {list(shape)} but the batch has "
            f"{list(x.shape[2:])}; set method.input_shape to data.shape"
        )
