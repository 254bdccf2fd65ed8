"""``train.precision``: the GPU recipes run bf16 on CUDA and fp32 on the CPU, where a run repeats exactly.

Why not bf16 on the CPU (torch 2.13.0 CPU, oneDNN 3.12, AVX-512): the weight gradient of a bf16 3-D
convolution over a feature map 2 voxels deep comes back from oneDNN's jit kernel with unset memory (values
of 1e18, NaN, different at each call), e.g. ResNet-18's layer3 on a 32x40x32 cohort.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from test_train_loop import NTXent, cfg, state_of
from torch import nn

from medssl.config import PretrainConfig, load_config
from medssl.engine.train import autocast_dtype, train_loop
from medssl.methods.siamese import SiameseContrastive

ROOT = Path(__file__).resolve().parents[2]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def precisions(node: object) -> list[str]:
    """Every ``precision:`` value in a parsed YAML document."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "precision"] + [
            p for v in node.values() for p in precisions(v)]
    return [p for v in node for p in precisions(v)] if isinstance(node, list) else []


SHIPPED = {path: precisions(yaml.safe_load(path.read_text())) for path in sorted(
    [*(ROOT / "configs").rglob("*.yaml"), *(ROOT / "experiments").glob("*.yaml")])}


def test_auto_is_bf16_on_cuda_and_fp32_on_the_cpu() -> None:
    assert autocast_dtype("auto", CUDA) == torch.bfloat16 and autocast_dtype("auto", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16 and autocast_dtype("fp16", CUDA) == torch.float16
    assert autocast_dtype("fp32", CUDA) is None
    assert load_config(None, ["train.precision=auto"], PretrainConfig).train.precision == "auto"


@pytest.mark.parametrize("path", [p for p, found in SHIPPED.items() if found],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_train_fp32_on_a_laptop(path: Path) -> None:
    """The GPU recipes (precision auto) keep bf16 on CUDA; no shipped config runs bf16 on the CPU."""
    for precision in SHIPPED[path]:
        assert autocast_dtype(precision, CPU) is None, f"{path.name}: precision {precision}"
    assert any(autocast_dtype(p, CUDA) == torch.bfloat16 for found in SHIPPED.values() for p in found)


class DepthTwo(torch.utils.data.Dataset):
    """8 volumes 2 voxels deep: the shape of ResNet-18's layer3 maps on a 32x40x32 cohort."""

    def __init__(self) -> None:
        self.x = torch.randn(8, 1, 2, 6, 6, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i]}


class ShallowNet(nn.Module):
    """Two 3x3x3 convolutions (16 channels, as oneDNN blocks them) on 2-deep maps, mean-pooled."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv3d(16, 16, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).float().mean(dim=(2, 3, 4))


def noise(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)


def shallow_method() -> SiameseContrastive:
    torch.manual_seed(0)
    return SiameseContrastive(ShallowNet(), nn.Linear(16, 8), NTXent())


def test_the_l_exp_recipe_on_the_cpu_repeats_from_its_seed(tmp_path: Path) -> None:
    """Two runs with the recipe's precision on the CPU end with identical, finite weights (under bf16
    they differed, or stopped on a NaN loss, on an AVX-512 CPU)."""
    precision = load_config(ROOT / "configs/pretrain/exp_resnet18.yaml", [], PretrainConfig).train.precision
    for run in ("a", "b"):
        train_loop(shallow_method(), DepthTwo(), noise, cfg(epochs=2, batch_size=4, precision=precision),
                   tmp_path / run, tensorboard=False)
    a, b = state_of(tmp_path / "a"), state_of(tmp_path / "b")
    for key in a:
        assert torch.isfinite(a[key]).all() and torch.equal(a[key], b[key]), key


def test_bf16_on_the_cpu_asked_for_runs_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"train\.precision=bf16 on the CPU: runs are not repeatable"):
        train_loop(shallow_method(), DepthTwo(), noise, cfg(epochs=1, max_steps_per_epoch=1, precision="bf16"),
                   tmp_path, tensorboard=False)
    assert (tmp_path / "checkpoints" / "last.pt").exists()
