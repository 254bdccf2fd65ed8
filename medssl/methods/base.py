"""``Method``: the base class of everything the engine trains (see ARCHITECTURE.md, "Methods")."""

from __future__ import annotations

import torch
from torch import nn


class Method(nn.Module):
    """An ``nn.Module`` whose ``training_step(batch, views) -> {"loss": scalar, ...}`` is one step.

    ``forward`` aliases ``training_step`` so that ``DistributedDataParallel`` can wrap the method (DDP
    synchronises gradients through ``forward``). Subclasses set ``self.backbone`` (the exported
    encoder) and may define ``on_step_end(step, total_steps)`` (EMA teachers, schedules) and
    ``param_groups()`` (per-group learning-rate scales).
    """

    def training_step(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return self.training_step(batch, views)
