"""Backbones: contract shapes, MONAI state-dict layout, activation checkpointing, channels_last_3d."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet121, resnet18

import medssl  # noqa: F401  (fills the registries)
from medssl.models import backbones
from medssl.registry import BACKBONES

MINE = ["densenet121_3d", "resnet18_3d", "alexnet_3d"]
FEATURES = {"densenet121_3d": 1024, "resnet18_3d": 512, "alexnet_3d": 128}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_gives_b_by_num_features(name: str) -> None:
    model = BACKBONES.build(name, in_channels=1)
    out = model(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, model.num_features)
    assert torch.isfinite(out).all()
    if name in FEATURES:
        assert model.num_features == FEATURES[name]


@pytest.mark.parametrize("name", MINE)
def test_checkpointing_gives_identical_outputs_gradients_and_bn_buffers(name: str) -> None:
    x = torch.randn(2, 1, 32, 32, 32)
    runs = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = BACKBONES.build(name, activation_checkpointing=ckpt)
        out = model(x)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        runs.append((out.detach(), grads, copy.deepcopy(model.state_dict())))
    (out0, g0, s0), (out1, g1, s1) = runs
    torch.testing.assert_close(out1, out0, rtol=0, atol=0)
    for key in g0:
        torch.testing.assert_close(g1[key], g0[key], rtol=0, atol=0, msg=key)
    for key in s0:  # BN running stats updated once, not twice (recompute must not touch them)
        torch.testing.assert_close(s1[key], s0[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", MINE)
def test_channels_last_3d_matches_contiguous(name: str) -> None:
    model = BACKBONES.build(name).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        ref = model(x)
        out = fast(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_densenet_is_monai_densenet121_without_its_linear() -> None:
    torch.manual_seed(0)
    ref = DenseNet121(spatial_dims=3, in_channels=1, out_channels=1).eval()
    ours = BACKBONES.build("densenet121_3d").eval()
    expected = {k for k in ref.state_dict() if not k.startswith("class_layers.out")}
    assert set(ours.state_dict()) == expected
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k in expected}, strict=True)
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        want = F.relu(ref.features(x)).mean(dim=(2, 3, 4))  # ReLU + global average pool of norm5
        torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_is_monai_resnet18_without_fc(stride: int) -> None:
    torch.manual_seed(0)
    ref = resnet18(spatial_dims=3, n_input_channels=1, conv1_t_stride=stride, feed_forward=False).eval()
    ours = BACKBONES.build("resnet18_3d", stem_stride=stride).eval()
    assert ours.conv1.stride == (stride,) * 3
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_resnet_default_stem_is_stride_two() -> None:
    assert BACKBONES.build("resnet18_3d").conv1.stride == (2, 2, 2)


def test_alexnet_structure_and_minimum_size() -> None:
    model = BACKBONES.build("alexnet_3d").eval()
    convs = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
             if k.endswith("weight") and v.dim() == 5]
    assert convs == [("features.0.weight", (64, 1, 5, 5, 5)), ("features.4.weight", (128, 64, 3, 3, 3)),
                     ("features.8.weight", (192, 128, 3, 3, 3)), ("features.11.weight", (192, 192, 3, 3, 3)),
                     ("features.14.weight", (128, 192, 3, 3, 3))]
    with torch.no_grad():
        x = torch.randn(1, 1, 17, 17, 17)
        torch.testing.assert_close(model(x), model.features(x).mean(dim=(2, 3, 4)))
        with pytest.raises(ValueError, match="at least 17"):
            model(torch.randn(1, 1, 16, 32, 32))


def test_checkpointing_is_off_without_grad() -> None:
    model = BACKBONES.build("alexnet_3d", activation_checkpointing=True).eval()
    calls = []
    original = backbones.checkpoint
    backbones.checkpoint = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        with torch.no_grad():
            model(torch.randn(1, 1, 24, 24, 24))
        assert not calls
        model(torch.randn(1, 1, 24, 24, 24))
        assert len(calls) == 5
    finally:
        backbones.checkpoint = original
