"""A missing (NaN) label must make the loss NaN, which the training loop's guard stops on; before, the
weights' NaNs were masked away and the loss read 0 while its gradients were NaN (silent corruption)."""

from __future__ import annotations

import pytest
import torch

from medssl.losses import build_loss

CASES = [("yaware", {}), ("yaware", {"normalize": "col"}), ("thr", {}), ("thr", {"variant": "code"}),
         ("exp", {}), ("exp", {"variant": "code"}), ("fairkl", {"kernel": "rbf", "sigma": 5.0}),
         ("fairkl", {"kernel": "rbf", "sigma": 5.0, "mode": "code"})]


@pytest.mark.parametrize("name,kw", CASES)
def test_a_nan_label_gives_a_nan_loss_not_a_silent_zero(name: str, kw: dict) -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    y = torch.tensor([20.0, 30.0, 45.0, 40.0, 50.0, 60.0])
    site = torch.tensor([0, 1, 0, 1, 0, 1])
    loss = build_loss(name, **kw)
    extra = {"bias": site} if name == "fairkl" else {}
    assert torch.isfinite(loss(z1, z2, y=y, **extra))
    y[2] = float("nan")
    assert torch.isnan(loss(z1, z2, y=y, **extra))
