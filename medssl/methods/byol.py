"""BYOL: an online network predicts an EMA target network's projection of the other view.

Online: backbone f_theta -> projector g_theta (the configured head) -> predictor q_theta.
Target: frozen copies f_xi, g_xi, updated after every optimiser step by
``xi <- tau_k xi + (1 - tau_k) theta`` with the cosine schedule
``tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2`` (tau_base = 0.996 -> 1).
Loss: the symmetric normalised MSE of seed eq. (17), see ``medssl.losses.byol``.

References:
    - [0] Grill et al., BYOL, NeurIPS 2020, https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.byol import BYOLLoss
from medssl.methods.base import Method
from medssl.methods.common import check_views, head_out_dim, predictor_mlp, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.models.momentum import cosine_schedule, momentum_copy, update_momentum
from medssl.registry import METHODS


@METHODS.register("byol")
class BYOL(Method):
    """BYOL with a cosine momentum schedule; the online ``backbone`` is the exported encoder.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F).
        head: projector (B, F) -> (B, d).
        loss: must be None (BYOL owns its objective).
        predictor_hidden_dim: hidden width of the predictor q (paper: 4096 for d = 256).
        momentum_base: tau_base, the target momentum at step 0 (paper: 0.996); it rises to
            ``momentum_end`` (1.0) along a cosine.
        momentum_end: the momentum at the last step.
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).

    ``training_step`` returns ``loss``, ``std``/``rank`` of the online projections and ``momentum``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        predictor_hidden_dim: int = 512,
        momentum_base: float = 0.996,
        momentum_end: float = 1.0,
        collapse_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "byol")
        if not 0.0 <= momentum_base <= momentum_end <= 1.0:
            raise ValueError(
                f"need 0 <= momentum_base <= momentum_end <= 1, got {momentum_base}, {momentum_end}"
            )
        self.backbone = backbone
        self.head = head
        dim = head_out_dim(head, backbone.num_features)
        self.predictor = predictor_mlp(dim, predictor_hidden_dim)
        self.target_backbone = momentum_copy(backbone)
        self.target_head = momentum_copy(head)
        self.criterion = BYOLLoss("normalized_mse")
        self.momentum_base, self.momentum_end = momentum_base, momentum_end
        self.register_buffer("momentum", torch.tensor(momentum_base))  # last tau (resumable)
        self.monitor = CollapseMonitor(collapse_threshold)


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "byol")
        z1, z2 = (self.head(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = (self.target_head(self.target_backbone(v)) for v in views[:2])
        out = {"loss": self.criterion(p1, p2, t1, t2)}
        out.update(self.monitor(z1.detach(), "BYOL projections"))
        out["momentum"] = self.momentum.clone()
        return out

    def on_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the target with ``tau_k``, k = ``step`` (the step just taken)."""
        tau = cosine_schedule(step, total_steps, self.momentum_base, self.momentum_end)
        self.momentum.fill_(tau)
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.head, self.target_head, tau)
