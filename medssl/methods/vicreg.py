"""VICReg method: shared encoder and expander, variance-invariance-covariance loss.

References:
    - [0] Bardes, Ponce & LeCun, VICReg, ICLR 2022, https://arxiv.org/abs/2105.04906
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.vicreg import VICRegLoss
from medssl.methods.base import Method
from medssl.methods.common import as_output, check_views, main_loss, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.registry import METHODS


@METHODS.register("vicreg")
class VICReg(Method):
    """``z_i = head(backbone(x_i))``, ``loss = VICRegLoss(z1, z2)``; its three terms are logged.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: expander (B, F) -> (B, d) (paper: 3 layers of 8192).
        loss: None (a ``VICRegLoss`` built from the coefficients below) or the configured
            objective, whose main loss must be ``vicreg`` (a regulariser may be added).
        sim_coeff, std_coeff, cov_coeff, gamma: used when ``loss`` is None (paper: 25, 25, 1, 1).
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).
        label, bias: batch keys passed as ``y``/``bias`` to the objective (for a regulariser).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
        collapse_threshold: float = 0.1,
        label: str | None = None,
        bias: str | None = None,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "vicreg", allowed=VICRegLoss)
        self.backbone = backbone
        self.head = head
        self.criterion = loss if loss is not None else VICRegLoss(
            sim_coeff, std_coeff, cov_coeff, gamma)
        self.label, self.bias = label, bias
        self.monitor = CollapseMonitor(collapse_threshold)


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "vicreg")
        z1, z2 = (self.head(self.backbone(v)) for v in views[:2])
        y = batch.get(self.label) if self.label else None
        bias = batch.get(self.bias) if self.bias else None
        out = as_output(self.criterion(z1, z2, y=y, bias=bias))
        with torch.no_grad():
            out.update(main_loss(self.criterion).terms(z1, z2))  # type: ignore[union-attr]
        out.update(self.monitor(z1.detach(), "VICReg embeddings"))
        return out
