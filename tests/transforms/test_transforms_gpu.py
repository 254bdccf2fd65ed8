"""The batched views and the encoders on CUDA (skipped without a GPU): ``pytest -m gpu tests/transforms``."""

from __future__ import annotations

import pytest
import torch

import medssl  # noqa: F401
from medssl.registry import BACKBONES, VIEWS
from medssl.transforms.base import apply_per_axis
from medssl.transforms.spatial import crop_resize_matrix

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("preset", ["yaware", "cutout", "none", "full"])
def test_views_on_cuda_with_a_cuda_generator(preset: str) -> None:
    x = torch.randn(8, 1, 32, 40, 32, device="cuda")
    aug = VIEWS.build(preset).cuda()
    out = aug(x, torch.Generator("cuda").manual_seed(0))
    assert out.device == x.device and out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(aug(x, torch.Generator("cuda").manual_seed(0)), out)
    assert aug(x.bfloat16()).dtype == torch.bfloat16


def test_separable_resampling_agrees_between_cpu_and_cuda() -> None:
    x = torch.randn(4, 1, 20, 24, 28)
    start = torch.tensor([0, 2, 5, 1])
    mats = [crop_resize_matrix(start, 15, n) for n in (20, 24, 28)]
    cpu = apply_per_axis(x, mats)
    gpu = apply_per_axis(x.cuda(), [m.cuda() for m in mats]).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)  # TF32 matmuls, if enabled, round to ~1e-3


@pytest.mark.parametrize("name", ["densenet121_3d", "resnet18_3d", "alexnet_3d"])
def test_encoders_bf16_channels_last_checkpointed_on_cuda(name: str) -> None:
    model = BACKBONES.build(name, activation_checkpointing=True).cuda()
    model = model.to(memory_format=torch.channels_last_3d)
    x = torch.randn(4, 1, 48, 56, 48, device="cuda").contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    assert out.shape == (4, model.num_features) and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
