"""Projection heads: published layouts, L2 norm, and the registry contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import medssl  # noqa: F401
from medssl.errors import ConfigError
from medssl.registry import HEADS


def test_yaware_head_is_linear_relu_linear() -> None:
    head = HEADS.build("mlp", in_dim=1024, hidden_dims=[512], out_dim=128)
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear]
    h = torch.randn(4, 1024)
    l1, _, l2 = head.layers
    want = F.linear(F.relu(F.linear(h, l1.weight, l1.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(head(h), want)
    assert head(h).shape == (4, 128) and head.out_dim == 128


def test_lexp_head_rows_have_unit_norm() -> None:
    head = HEADS.build("mlp", in_dim=512, hidden_dims=[512], out_dim=128, l2_norm=True)
    z = head(torch.randn(5, 512) * 10)
    assert z.shape == (5, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    raw = head.layers(torch.ones(1, 512))
    torch.testing.assert_close(head(torch.ones(1, 512)), raw / raw.norm())


def test_mlp_options() -> None:
    bn = HEADS.build("mlp", in_dim=16, hidden_dims=[8, 4], out_dim=2, batch_norm=True)
    assert [type(m) for m in bn.layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU,
                                            nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert bn(torch.randn(3, 16)).shape == (3, 2)
    single = HEADS.build("mlp", in_dim=16, hidden_dims=[], out_dim=2)
    assert [type(m) for m in single.layers] == [nn.Linear]


def test_linear_and_identity_heads() -> None:
    lin = HEADS.build("linear", in_dim=6, out_dim=3)
    h = torch.randn(2, 6)
    torch.testing.assert_close(lin(h), h @ lin.layers[0].weight.T + lin.layers[0].bias)
    ident = HEADS.build("identity", in_dim=6)
    assert torch.equal(ident(h), h) and ident.out_dim == 6
    torch.testing.assert_close(HEADS.build("identity", in_dim=6, l2_norm=True)(h), F.normalize(h, dim=1))


def test_bad_head_arguments() -> None:
    with pytest.raises(ConfigError, match="hidden_dims"):
        HEADS.build("mlp", in_dim=8, hiden_dims=[4])
    with pytest.raises(ValueError, match="positive integers"):
        HEADS.build("mlp", in_dim=8, hidden_dims=[0])
