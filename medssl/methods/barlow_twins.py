"""Barlow Twins method: shared encoder and projector, loss on the two views' cross-correlation.

References:
    - [0] Zbontar et al., Barlow Twins, ICML 2021, https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.barlow_twins import BarlowTwinsLoss
from medssl.methods.common import check_views, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.registry import METHODS


@METHODS.register("barlow_twins")
class BarlowTwins(nn.Module):
    """``z_i = head(backbone(x_i))``, ``loss = BarlowTwinsLoss(z1, z2)``.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: projector (B, F) -> (B, d) (paper: 3 layers of 8192).
        loss: None (a ``BarlowTwinsLoss`` built with ``lambda_offdiag``) or a configured
            ``barlow_twins`` loss.
        lambda_offdiag: off-diagonal weight when ``loss`` is None (paper: 5e-3).
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        lambda_offdiag: float = 5e-3,
        collapse_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "barlow_twins", allowed=BarlowTwinsLoss)
        self.backbone = backbone
        self.head = head
        self.criterion = loss if loss is not None else BarlowTwinsLoss(lambda_offdiag)
        self.monitor = CollapseMonitor(collapse_threshold)

    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "barlow_twins")
        z1, z2 = (self.head(self.backbone(v)) for v in views[:2])
        out = {"loss": self.criterion(z1, z2)}
        out.update(self.monitor(z1.detach(), "Barlow Twins projections"))
        return out
