"""Supervised pretraining on a continuous label (age): the OpenBHB baseline.

``y^ = target_mean + target_scale * (w . backbone(x) + b)`` and the L1 loss on the standardised
scale ``L = mean |y^ - y| / target_scale`` (so the optimisation does not depend on the label's
units); ``mae`` logs ``mean |y^ - y|`` in the label's units (years for age). The views are the
inputs (the first one; the engine passes the raw image when no view augmenter is configured).

References:
    - [0] Dufumier et al., OpenBHB, NeuroImage 2022, doi:10.1016/j.neuroimage.2022.119637
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.errors import DataError
from medssl.methods.base import Method
from medssl.methods.common import head_out_dim, refuse_loss
from medssl.registry import METHODS


@METHODS.register("supervised")
class SupervisedRegression(Method):
    """Backbone + linear regressor trained with L1 on ``batch[label]``.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: unused unless ``use_head``; the regressor is linear on the backbone features.
        loss: must be None (L1).
        label: batch key of the target (``"age"``).
        target_mean: added to the regressor's output (e.g. the training cohort's mean age).
        target_scale: multiplies the regressor's output (e.g. the cohort's age std), > 0.
        use_head: regress from ``head(backbone(x))`` instead of the backbone features.
    """

    learns_label = True  # the config's objective.label is the regression target

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        label: str = "age",
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        use_head: bool = False,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "supervised")
        if target_scale <= 0:
            raise ValueError(f"target_scale must be > 0, got {target_scale}")
        if use_head and head is None:
            raise ValueError("use_head=True needs a head")
        self.backbone = backbone
        self.head = head if use_head else None
        in_dim = backbone.num_features
        if use_head:
            in_dim = head_out_dim(head, backbone.num_features)  # type: ignore[arg-type]
        self.regressor = nn.Linear(in_dim, 1)
        self.label = label or "age"
        self.target_mean, self.target_scale = target_mean, target_scale

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) -> (B,) predictions in the label's units."""
        h = self.backbone(x)
        if self.head is not None:
            h = self.head(h)
        return self.target_mean + self.target_scale * self.regressor(h).squeeze(1).float()


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.label not in batch:
            raise DataError(f"the supervised method needs batch key {self.label!r}; "
                            f"available: {sorted(batch)}")
        y = batch[self.label].float().reshape(-1)
        if not torch.isfinite(y).all():
            raise DataError(
                f"{int((~torch.isfinite(y)).sum())} scans of the batch have a missing "
                f"{self.label!r}; supervised pretraining needs it for every scan "
                f"(filter the cohort)"
            )
        x = views[0] if views else batch["image"]
        error = self.predict(x) - y
        return {"loss": error.abs().mean() / self.target_scale, "mae": error.abs().mean().detach()}
