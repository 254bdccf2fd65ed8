"""A contrastive loss plus an optional regulariser: ``total = alpha * L + lam * R``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medssl.losses.core import check_number


class CombinedObjective(nn.Module):
    """``forward(z1, z2, y, bias) -> {"loss": alpha L + lam R, "contrastive": L, "regularizer": R}``.

    Args:
        loss: a contrastive loss module (e.g. ``build_loss("eps_supinfonce", epsilon=0.1)``).
        regularizer: None or a module with the same call signature (e.g. ``build_loss("fairkl")``).
        alpha: weight of the contrastive loss (>= 0). lam: weight of the regulariser (>= 0).
    ``regularizer`` is None gives ``R = 0`` (a zero tensor). Queue keywords go to ``loss`` only.

    Examples:
        >>> import torch
        >>> from medssl.losses import build_loss
        >>> obj = CombinedObjective(build_loss("yaware"), build_loss("fairkl", kernel="rbf", sigma=2.0),
        ...                         alpha=1.0, lam=0.5)
        >>> z1, z2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
        >>> out = obj(z1, z2, y=20 + 50 * torch.rand(8), bias=torch.tensor([0, 1] * 4))
        >>> bool(torch.isclose(out["loss"], out["contrastive"] + 0.5 * out["regularizer"]))
        True
        >>> out["loss"].backward()
    """

    def __init__(
        self,
        loss: nn.Module,
        regularizer: nn.Module | None = None,
        alpha: float = 1.0,
        lam: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise ValueError(f"loss must be an nn.Module, got {type(loss).__name__}")
        self.loss = loss
        self.regularizer = regularizer
        self.alpha = check_number("alpha", alpha)
        self.lam = check_number("lam", lam)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, lam={self.lam}"

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        y: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        queue_z: Tensor | None = None,
        queue_y: Tensor | None = None,
    ) -> dict[str, Tensor]:
        queue = {} if queue_z is None else {"queue_z": queue_z, "queue_y": queue_y}
        contrastive = self.loss(z1, z2, y, bias, **queue)
        if self.regularizer is None:
            reg = torch.zeros((), dtype=contrastive.dtype, device=contrastive.device)
        else:
            reg = self.regularizer(z1, z2, y, bias)
        return {
            "loss": self.alpha * contrastive + self.lam * reg,
            "contrastive": contrastive,
            "regularizer": reg,
        }
