"""SimSiam: one shared encoder, a predictor on one branch and a stop-gradient on the other.

``z_i = g(f(x_i))`` (backbone + configured projector), ``p_i = h(z_i)`` (bottleneck predictor), and
the symmetric negative cosine of seed eq. (18), ``L = -cos(p1, sg(z2)) - cos(p2, sg(z1))``
(minimum -2). No EMA, no negatives: the stop-gradient prevents the collapse.

References:
    - [0] Chen & He, SimSiam, CVPR 2021, https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.byol import BYOLLoss
from medssl.methods.base import Method
from medssl.methods.common import check_views, head_out_dim, predictor_mlp, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.registry import METHODS


@METHODS.register("simsiam")
class SimSiam(Method):
    """SimSiam; the shared ``backbone`` is the exported encoder.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F).
        head: projector (B, F) -> (B, d) (the paper's ends with a BatchNorm).
        loss: must be None (SimSiam owns its objective).
        predictor_hidden_dim: bottleneck width of the predictor h; 0 means d // 4 (paper: 512
            for d = 2048).
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        predictor_hidden_dim: int = 0,
        collapse_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "simsiam")
        self.backbone = backbone
        self.head = head
        dim = head_out_dim(head, backbone.num_features)
        self.predictor = predictor_mlp(dim, predictor_hidden_dim or max(dim // 4, 1))
        self.criterion = BYOLLoss("negative_cosine")
        self.monitor = CollapseMonitor(collapse_threshold)


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "simsiam")
        z1, z2 = (self.head(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        out = {"loss": self.criterion(p1, p2, z1, z2)}  # the loss detaches z1, z2
        out.update(self.monitor(z1.detach(), "SimSiam projections"))
        return out
