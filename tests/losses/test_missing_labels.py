"""Bad labels and hyper-parameters. A missing (NaN) label must make the loss NaN, which the training
loop's guard stops on; before, the NaN weights were masked away and the loss read 0 while its gradients
were NaN (silent corruption). Invalid hyper-parameters are refused when the loss is built."""

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


def test_invalid_hyper_parameters_are_refused_at_construction() -> None:
    """NaN slipped through ``value < 0`` checks; FairKL's negative sets weigh pairs by 1 - K."""
    for name, kw in [("barlow_twins", {"lambda_offdiag": float("nan")}), ("vicreg", {"sim_coeff": float("nan")}),
                     ("fairkl", {"kernel": "gaussian", "sigma": 0.3})]:
        with pytest.raises(ValueError):
            build_loss(name, **kw)
    build_loss("fairkl", kernel="gaussian", sigma=2.0)  # max 0.2: fine
