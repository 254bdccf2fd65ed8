"""CUDA + bf16 autocast smoke run of every method (skipped without a GPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medssl.transforms.genesis import GenesisCorruption

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("name", ["byol", "simsiam", "dino", "barlow_twins", "vicreg", "genesis",
                                  "vae", "supervised", "moco"])
def test_method_steps_on_cuda_under_bf16(name: str, tiny: Any, batch: dict) -> None:
    from test_method_training import CASES

    factory, lr, _ = CASES[name]
    method = factory(tiny.backbone(), tiny.head()).cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
    for step in range(3):
        views = tiny.views(batch["image"])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = method(batch, views)
        assert torch.isfinite(out["loss"])
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        if hasattr(method, "on_step_end"):
            method.on_step_end(step, 3)


def test_genesis_corruption_matches_on_cpu_and_cuda() -> None:
    x = torch.randn(2, 1, 24, 28, 24)
    off = GenesisCorruption(shuffle_prob=0, nonlinear_prob=0, paint_prob=0)
    torch.testing.assert_close(off(x.cuda()).cpu(), x, atol=1e-5, rtol=1e-5)
    y = GenesisCorruption()(x.cuda())
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert y.min() >= x.min().cuda() - 1e-5 and y.max() <= x.max().cuda() + 1e-5
