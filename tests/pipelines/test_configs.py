"""Every shipped pretraining config loads, validates and builds its method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medssl.config import PretrainConfig, load_config
from medssl.pipelines.pretrain import method_from_config

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN_CONFIGS = sorted((ROOT / "configs" / "pretrain").glob("*.yaml")) + [
    ROOT / "configs" / "debug" / "tiny_cpu.yaml"
]


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: p.stem)
def test_pretrain_config_builds(path: Path) -> None:
    cfg = load_config(path, ["data.shape=[32,32,32]"], PretrainConfig)
    method = method_from_config(cfg)
    assert method.backbone.num_features > 0
    # one forward of the method on a tiny batch gives a finite loss (small input: a smoke check)
    x = torch.randn(4, 1, 32, 32, 32)
    batch = {"image": x, "age": torch.tensor([20.0, 30.0, 40.0, 50.0]),
             "sex": torch.tensor([0, 1, 0, 1]), "site": torch.tensor([0, 0, 1, 1])}
    out = method.training_step(batch, [x, x.flip(-1)])
    assert torch.isfinite(out["loss"])


def test_recipe_defaults_match_the_published_ones() -> None:
    yaware = load_config(ROOT / "configs/pretrain/yaware_densenet121.yaml", [], PretrainConfig)
    assert (yaware.loss["sigma"], yaware.loss["temperature"], yaware.train.batch_size) == (5.0, 0.1, 64)
    assert (yaware.train.lr, yaware.train.weight_decay, yaware.train.epochs) == (1e-4, 5e-5, 100)
    lexp = load_config(ROOT / "configs/pretrain/exp_resnet18.yaml", [], PretrainConfig)
    assert (lexp.loss["sigma"], lexp.train.batch_size, lexp.train.epochs) == (2.0, 32, 300)
    assert (lexp.train.schedule, lexp.train.step_every, lexp.train.step_gamma) == ("step", 10, 0.9)
    assert lexp.views["name"] == "none"
