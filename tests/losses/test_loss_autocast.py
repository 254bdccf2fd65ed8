"""Losses compute in float32 inside a bf16/fp16 autocast region (the training step's), not in half."""

from __future__ import annotations

import pytest
import torch

from medssl.losses import build_loss

CASES = {  # name -> kwargs; every loss takes (z1, z2, y=..., bias=...)
    "infonce": {"temperature": 0.1},
    "yaware": {"temperature": 0.1, "sigma": 5.0},
    "exp": {"sigma": 2.0},
    "thr": {"sigma": 2.0},
    "supcon": {},
    "fairkl": {"kernel": "rbf", "sigma": 2.0},
    "barlow_twins": {},
    "vicreg": {},
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_under_autocast_equals_float32(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    loss = build_loss(name, **CASES[name])
    z1, z2 = torch.randn(16, 32), torch.randn(16, 32)
    y = torch.randint(20, 30, (16,)).float() if name != "supcon" else torch.randint(0, 3, (16,))
    site = torch.randint(0, 3, (16,))
    ref = loss(z1, z2, y=y, bias=site)
    with torch.autocast("cpu", dtype=dtype):
        out = loss(z1, z2, y=y, bias=site)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
