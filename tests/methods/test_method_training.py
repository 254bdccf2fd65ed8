"""One tiny CPU training run per method: finite losses that go down on a fixed 16^3 batch."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import nn

from medssl.losses import CombinedObjective, build_loss
from medssl.methods.barlow_twins import BarlowTwins
from medssl.methods.byol import BYOL
from medssl.methods.dino import DINO
from medssl.methods.genesis import ModelGenesis
from medssl.methods.moco import MoCo
from medssl.methods.simsiam import SimSiam
from medssl.methods.supervised import SupervisedRegression
from medssl.methods.vae import VAE
from medssl.methods.vicreg import VICReg

STEPS = 12
SHAPE = (16, 16, 16)

# name -> (factory(backbone, head), learning rate, reports collapse statistics)
CASES: dict[str, tuple[Callable[[nn.Module, nn.Module], nn.Module], float, bool]] = {
    "byol": (lambda b, h: BYOL(b, h, predictor_hidden_dim=32), 3e-3, True),
    "simsiam": (lambda b, h: SimSiam(b, h), 3e-3, True),
    # centre = the batch mean (m = 0): an EMA centre moves the target and the loss with it (the
    # EMA itself is checked in test_method_losses)
    "dino": (lambda b, h: DINO(b, h, out_dim=64, n_local_crops=2, teacher_warmup_fraction=0.0,
                               teacher_temperature=0.04, momentum_base=0.99,
                               center_momentum=0.0), 3e-3, True),
    "barlow_twins": (lambda b, h: BarlowTwins(b, h), 3e-3, True),
    "vicreg": (lambda b, h: VICReg(b, h), 3e-3, True),
    "genesis": (lambda b, h: ModelGenesis(b, h, input_shape=SHAPE, decoder_channels=4), 3e-3,
                False),
    "vae": (lambda b, h: VAE(b, h, input_shape=SHAPE, latent_dim=8, decoder_channels=4), 3e-3,
            False),
    "supervised": (lambda b, h: SupervisedRegression(b, h, target_mean=45.0, target_scale=15.0),
                   3e-3, False),
    "moco": (lambda b, h: MoCo(b, h, loss=CombinedObjective(build_loss("yaware", sigma=10.0)),
                               queue_size=32, label="age", momentum_base=0.9), 3e-3, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tiny_training_run_has_finite_decreasing_loss(name: str, tiny: Any, batch: dict) -> None:
    factory, lr, monitors = CASES[name]
    torch.manual_seed(0)
    method = factory(tiny.backbone(), tiny.head())
    method.train()
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    exported = {k: v.clone() for k, v in method.backbone.state_dict().items()}
    losses = []
    for step in range(STEPS):
        out = method(batch, tiny.views(batch["image"]))  # forward aliases training_step
        assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        if hasattr(method, "on_step_end"):
            method.on_step_end(step, STEPS)
        losses.append(out["loss"].item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, f"{name}: loss did not decrease: {losses}"
    if monitors:
        assert out["std"] > 0 and 1 <= out["rank"] <= 16
    changed = any(not torch.equal(v, method.backbone.state_dict()[k]) for k, v in exported.items())
    assert changed, "the exported backbone must be the trained one"
