"""Barlow Twins method: shared encoder and projector, loss on the two views' cross-correlation.

References:
    - [0] Zbontar et al., Barlow Twins, ICML 2021, https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.barlow_twins import BarlowTwinsLoss
from medssl.methods.base import Method
from medssl.methods.common import as_output, check_views, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.registry import METHODS


@METHODS.register("barlow_twins")
class BarlowTwins(Method):
    """``z_i = head(backbone(x_i))``, ``loss = BarlowTwinsLoss(z1, z2)``.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: projector (B, F) -> (B, d) (paper: 3 layers of 8192).
        loss: None (a ``BarlowTwinsLoss`` built with ``lambda_offdiag``) or the configured
            objective, whose main loss must be ``barlow_twins`` (a regulariser may be added).
        lambda_offdiag: off-diagonal weight when ``loss`` is None (paper: 5e-3).
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).
        label, bias: batch keys passed as ``y``/``bias`` to the objective (only a regulariser
            such as FairKL uses them; the Barlow Twins loss ignores them).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        lambda_offdiag: float = 5e-3,
        collapse_threshold: float = 0.1,
        label: str | None = None,
        bias: str | None = None,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "barlow_twins", allowed=BarlowTwinsLoss)
        self.backbone = backbone
        self.head = head
        self.criterion = loss if loss is not None else BarlowTwinsLoss(lambda_offdiag)
        self.label, self.bias = label, bias
        self.monitor = CollapseMonitor(collapse_threshold)


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "barlow_twins")
        z1, z2 = (self.head(self.backbone(v)) for v in views[:2])
        y = batch.get(self.label) if self.label else None
        bias = batch.get(self.bias) if self.bias else None
        out = as_output(self.criterion(z1, z2, y=y, bias=bias))
        out.update(self.monitor(z1.detach(), "Barlow Twins projections"))
        return out
