"""Method internals: DINO multi-crop and schedules, BYOL's EMA target, VAE/supervised objectives,
and the configuration errors users see."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError, DataError
from medssl.losses import CombinedObjective, build_loss
from medssl.losses.barlow_twins import BarlowTwinsLoss
from medssl.methods.barlow_twins import BarlowTwins
from medssl.methods.byol import BYOL
from medssl.methods.dino import DINO, local_crops
from medssl.methods.genesis import ModelGenesis
from medssl.methods.supervised import SupervisedRegression
from medssl.methods.vae import VAE, gaussian_kl, vae_loss
from medssl.models.decoders import VectorDecoder3d
from medssl.registry import METHODS


def test_local_crops_shapes_and_full_box_identity() -> None:
    x = torch.randn(3, 1, 8, 10, 12)
    crops = local_crops(x, 2, (0.1, 0.4), (4, 5, 6))
    assert len(crops) == 2 and all(c.shape == (3, 1, 4, 5, 6) for c in crops)
    assert not torch.allclose(crops[0], crops[1])
    whole = local_crops(x, 1, (1.0, 1.0), (8, 10, 12))[0]  # the full box at the same size
    torch.testing.assert_close(whole, x, atol=1e-5, rtol=1e-5)


def test_local_crop_is_a_sub_box_of_the_volume() -> None:
    ramp = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(2, 1, 16, 16, 16).contiguous()
    crop = local_crops(ramp, 1, (0.125, 0.125), (8, 8, 8))[0]  # side 1/2 of each axis
    depth = crop[:, 0, :, 4, 4]  # resampled depth profile: a contiguous 8-voxel window
    assert torch.allclose(depth.diff(dim=1), torch.ones(2, 7), atol=1e-4)
    assert (depth.min(dim=1).values >= 0).all() and (depth.max(dim=1).values <= 15).all()


def test_dino_schedules_multicrop_views_and_resumable_state(tiny, batch) -> None:
    method = DINO(tiny.backbone(), tiny.head(), out_dim=32, n_local_crops=3,
                  teacher_temperature=0.07, warmup_teacher_temperature=0.04,
                  teacher_warmup_fraction=0.5)
    seen: list[tuple[int, ...]] = []
    hook = method.backbone.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = method.training_step(batch, tiny.views(batch["image"]))
    hook.remove()
    assert seen == [(8, 1, 16, 16, 16)] * 2 + [(8, 1, 8, 8, 8)] * 3  # student: 2 global + 3 local
    assert float(out["teacher_temperature"]) == pytest.approx(0.04)
    assert {"loss", "std", "rank"} <= set(out)
    total = 10
    for step in range(5):
        method.on_step_end(step, total)
    assert float(method.tau_t) == pytest.approx(0.07)  # warm-up over 5 of 10 steps is done
    method.on_step_end(1, total)
    assert float(method.tau_t) == pytest.approx(0.04 + 0.03 * 2 / 5)
    assert float(method.momentum) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 10) + 1) / 2)
    clone = DINO(tiny.backbone(), tiny.head(), out_dim=32)
    clone.load_state_dict(method.state_dict())
    assert float(clone.tau_t) == float(method.tau_t)
    torch.testing.assert_close(clone.criterion.center, method.criterion.center)


def test_byol_target_follows_the_ema_of_the_online_network(tiny, batch) -> None:
    method = BYOL(tiny.backbone(), tiny.head(), predictor_hidden_dim=8, momentum_base=0.9)
    online = [p.detach().clone() for p in method.backbone.parameters()]
    target = [p.detach().clone() for p in method.target_backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(0.1)
    method.on_step_end(0, 100)  # tau_0 = momentum_base
    for t_old, o_old, t_new in zip(target, online, method.target_backbone.parameters()):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * (o_old + 0.1))
    out = method.training_step(batch, tiny.views(batch["image"]))
    assert out["loss"].requires_grad
    assert all(p.grad is None for p in method.target_backbone.parameters())


def test_vae_objective_matches_torch_distributions() -> None:
    from torch.distributions import Normal, kl_divergence

    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    expected_kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected_kl)
    assert float(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max()) == 0.0
    x, recon = torch.randn(4, 1, 3, 3, 3), torch.randn(4, 1, 3, 3, 3)
    nll = -Normal(recon, 1.0).log_prob(x).flatten(1).sum(1) - 27 * 0.5 * math.log(2 * math.pi)
    out = vae_loss(x, recon, mu, logvar, beta=4.0)
    torch.testing.assert_close(out["loss"], ((nll + 4.0 * expected_kl).mean() / 27))


def test_vector_decoder_output_shape() -> None:
    decoder = VectorDecoder3d(32, (12, 14, 10), base_channels=4)
    assert decoder(torch.randn(2, 32)).shape == (2, 1, 12, 14, 10)
    assert decoder.start == (1, 1, 1) or max(decoder.start) <= 8


def test_supervised_regression_units_and_missing_labels(tiny, batch) -> None:
    method = SupervisedRegression(tiny.backbone(), None, target_mean=45.0, target_scale=15.0)
    with torch.no_grad():
        method.regressor.weight.zero_()
        method.regressor.bias.fill_(1.0)  # predicts 45 + 15 = 60 for everyone
    out = method.training_step(batch, [batch["image"]])
    mae = (60.0 - batch["age"]).abs().mean()
    assert out["mae"].item() == pytest.approx(mae.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(mae.item() / 15.0, rel=1e-6)
    bad = dict(batch, age=batch["age"].clone())
    bad["age"][3] = float("nan")
    with pytest.raises(DataError, match="missing 'age'"):
        method.training_step(bad, [batch["image"]])


def test_configuration_errors_name_the_fix(tiny) -> None:
    infonce = CombinedObjective(build_loss("infonce"))
    with pytest.raises(ConfigError, match="name: none"):
        BYOL(tiny.backbone(), tiny.head(), loss=infonce)
    with pytest.raises(ConfigError, match="barlow_twins"):
        BarlowTwins(tiny.backbone(), tiny.head(), loss=infonce)
    wrapped = CombinedObjective(BarlowTwinsLoss(0.01))
    assert BarlowTwins(tiny.backbone(), tiny.head(), loss=wrapped).criterion is wrapped
    with pytest.raises(ConfigError, match="input_shape"):
        ModelGenesis(tiny.backbone(), None)
    method = VAE(tiny.backbone(), None, input_shape=(16, 16, 16), latent_dim=4)
    with pytest.raises(DataError, match=r"\[16, 16, 16\]"):
        method.training_step({"image": torch.randn(2, 1, 8, 8, 8)}, [])
    for name in ("byol", "simsiam", "dino", "barlow_twins", "vicreg", "genesis", "vae",
                 "supervised", "moco"):
        importlib.import_module(f"medssl.methods.{name}")  # until medssl.methods imports them
        assert name in METHODS
    assert isinstance(METHODS.get("vicreg")(tiny.backbone(), tiny.head()), nn.Module)
