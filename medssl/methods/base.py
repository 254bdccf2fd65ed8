"""``Method``: the base class of everything the engine trains (see ARCHITECTURE.md, "Methods")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Method(nn.Module):
    """An ``nn.Module`` whose ``training_step(batch, views) -> {"loss": scalar, ...}`` is one step.

    ``forward`` aliases ``training_step`` so that ``DistributedDataParallel`` can wrap the method (DDP
    synchronises gradients through ``forward``). Subclasses set ``self.backbone`` (the exported
    encoder) and may override ``on_step_end(step, total_steps)`` (EMA teachers, schedules) and
    ``param_groups()`` (per-group learning-rate scales); both default to doing nothing special.

    Optional split of the step, needed by the gradient cache (``train.grad_cache_chunk``, see
    :mod:`medssl.engine.grad_cache`): ``embed(views)`` maps the views of some subjects to one embedding
    per view, ``embedding_loss(batch, embeddings)`` maps the embeddings of the whole batch to
    ``{"loss": ..., **scalars}``, and ``training_step(batch, views)`` must equal
    ``embedding_loss(batch, embed(views))``. Override both only when the loss depends on the views
    through these embeddings alone (no momentum teacher, no state updated inside ``embed``).
    """

    def training_step(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return self.training_step(batch, views)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (0-based ``step`` of ``total_steps``); nothing by default."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups ``[{"params": [...], "lr_scale": s}]``; by default one group of every parameter."""
        return [{"params": list(self.parameters())}]

    def embed(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Views ``[(b, C, D, H, W)] * V`` of ``b`` subjects -> embeddings ``[(b, d)] * V``."""
        raise NotImplementedError(f"{type(self).__name__} does not split its step (embed)")

    def embedding_loss(
        self, batch: dict[str, torch.Tensor], embeddings: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Embeddings ``[(B, d)] * V`` of the whole batch -> ``{"loss": scalar, **scalars}``."""
        raise NotImplementedError(f"{type(self).__name__} does not split its step (embedding_loss)")

    def supports_grad_cache(self) -> bool:
        """True when the subclass overrides both ``embed`` and ``embedding_loss``."""
        cls = type(self)
        return cls.embed is not Method.embed and cls.embedding_loss is not Method.embedding_loss
