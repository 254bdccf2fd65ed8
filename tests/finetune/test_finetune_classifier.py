"""The classifier method: freeze policies really freeze, lr decay groups, the weighted loss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import medssl.models  # noqa: F401  (registers tiny_cnn3d)
from medssl.errors import ConfigError
from medssl.methods.classifier import Classifier, backbone_stages
from medssl.registry import BACKBONES


def _batch(n: int = 6) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    x = torch.randn(n, 1, 16, 16, 16)
    return {"label": torch.tensor([0, 1] * (n // 2))}, [x]


def _step(method: Classifier) -> Classifier:
    """One SGD step over the trainable parameters, in train mode; returns the method."""
    before = copy.deepcopy(method.state_dict())
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    method.train()
    batch, views = _batch()
    method.training_step(batch, views)["loss"].backward()
    opt.step()
    method.before = before  # type: ignore[attr-defined]
    return method


def _changed(method: Classifier, prefix: str) -> dict[str, bool]:
    """Per state-dict entry under ``prefix`` (backbone params and BN buffers): did it change?"""
    now = method.state_dict()
    return {k: not torch.equal(method.before[k], now[k]) for k in now  # type: ignore[attr-defined]
            if k.startswith(prefix) and now[k].dtype.is_floating_point}


def test_stages_of_tiny_backbone_are_conv_bn_blocks() -> None:
    stages = backbone_stages(BACKBONES.build("tiny_cnn3d"))
    assert stages == [[f"features.{3 * i}", f"features.{3 * i + 1}"] for i in range(4)]


def test_linear_freezes_backbone_weights_and_batchnorm_statistics() -> None:
    method = _step(Classifier(BACKBONES.build("tiny_cnn3d", width=4), freeze="linear"))
    assert all(p.grad is None for p in method.backbone.parameters())
    assert not any(_changed(method, "backbone.").values())  # running_mean/var included
    assert all(_changed(method, "head.").values())
    assert not method.backbone.training and method.head.training


def test_partial_trains_only_the_last_stages() -> None:
    method = _step(Classifier(BACKBONES.build("tiny_cnn3d", width=4), freeze="partial", partial_stages=1))
    assert method.trainable_prefixes == ["features.9.", "features.10."]
    changed = _changed(method, "backbone.")
    late = ("backbone.features.9.", "backbone.features.10.")
    assert changed and all(v == k.startswith(late) for k, v in changed.items()), changed
    for name, p in method.backbone.named_parameters():
        assert (p.grad is not None) == name.startswith(("features.9.", "features.10.")), name


def test_partial_with_explicit_prefixes_and_typo() -> None:
    method = Classifier(BACKBONES.build("tiny_cnn3d", width=4), freeze="partial", unfreeze=["features.10."])
    assert [n for n, p in method.backbone.named_parameters() if p.requires_grad] == [
        "features.10.weight", "features.10.bias"]
    with pytest.raises(ConfigError, match="match no backbone parameter"):
        Classifier(BACKBONES.build("tiny_cnn3d"), freeze="partial", unfreeze=["layer4."])


def test_full_trains_everything_with_layerwise_lr_decay() -> None:
    method = _step(Classifier(BACKBONES.build("tiny_cnn3d", width=4), freeze="full", lr_decay=0.5))
    assert all(_changed(method, "backbone.").values())
    groups = method.param_groups()
    assert [g["lr_scale"] for g in groups] == [0.5**4, 0.5**3, 0.5**2, 0.5**1, 1.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in method.parameters()) and len(set(ids)) == len(ids)
    assert groups[-1]["params"] == list(method.head.parameters())


def test_weighted_cross_entropy_matches_the_formula() -> None:
    weights = [0.25, 3.0]
    method = Classifier(BACKBONES.build("tiny_cnn3d", width=4), class_weights=weights).eval()
    batch, views = _batch(8)
    batch["label"] = torch.tensor([0, 0, 0, 1, 0, 1, 0, 0])
    loss = method.training_step(batch, views)["loss"]
    logp = F.log_softmax(method.logits(views[0]), dim=1)
    num = sum(weights[y] * -logp[i, y] for i, y in enumerate(batch["label"].tolist()))
    den = sum(weights[y] for y in batch["label"].tolist())
    assert loss.item() == pytest.approx((num / den).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["resnet18_3d", "densenet121_3d", "alexnet_3d"])
def test_partial_prefixes_exist_for_every_backbone(name: str) -> None:
    if name not in BACKBONES:
        pytest.skip(f"{name} not registered")
    method = Classifier(BACKBONES.build(name), freeze="partial")
    trainable = [n for n, p in method.backbone.named_parameters() if p.requires_grad]
    assert trainable and len(trainable) < len(list(method.backbone.parameters()))
