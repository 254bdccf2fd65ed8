"""Closed forms, the spec's reductions between losses, invariances, dtypes, gradients and errors."""

from __future__ import annotations

import math

import pytest
import torch
from loss_inputs import make_inputs

from medssl.errors import ConfigError
from medssl.losses import available_losses, build_loss
from medssl.registry import KERNELS

CONTRASTIVE = {
    "infonce": {},
    "dcl": {},
    "supcon": {},
    "eps_supinfonce": {"epsilon": 0.2},
    "eps_supcon": {"epsilon": 0.2},
    "yaware": {"sigma": 2.0},
    "yaware_col": {"sigma": 2.0, "normalize": "col"},
    "thr": {},
    "thr_code": {"variant": "code"},
    "exp": {},
    "exp_cold": {"temperature": 0.02, "sigma": 0.5},
    "exp_code": {"variant": "code", "base_temperature": 0.07},
}
DISCRETE = {"supcon", "eps_supinfonce", "eps_supcon"}


def _build(key, **extra):
    return build_loss(
        key.split("_")[0] if not key.startswith("eps") else key,
        **CONTRASTIVE[key],
        **extra,
    )


def _labels(key, n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    if key in DISCRETE:
        return torch.randint(0, 3, (n,), generator=g)
    return (20 + 5 * torch.randn(n, generator=g)).to(dtype)


def test_available_losses_and_registry():
    assert set(available_losses()) >= {
        "infonce",
        "dcl",
        "supcon",
        "eps_supinfonce",
        "eps_supcon",
        "yaware",
        "thr",
        "exp",
        "fairkl",
    }
    assert set(KERNELS.names()) >= {"rbf", "gaussian", "cauchy", "dirac"}
    with pytest.raises(ConfigError, match="Did you mean"):
        build_loss("yawre")
    with pytest.raises(ConfigError, match="sigm"):
        build_loss("yaware", sigm=2.0)


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_collinear_embeddings_give_log_2n_minus_1(n):
    z = torch.ones(n, 4, dtype=torch.float64)
    for temperature in (0.1, 1.0):
        value = build_loss("infonce", temperature=temperature)(z, z)
        assert value.item() == pytest.approx(math.log(2 * n - 1), rel=1e-12, abs=1e-12)


def test_two_identical_rows_give_ln3():
    z = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.float64)
    assert build_loss("infonce")(z, z).item() == pytest.approx(math.log(3), rel=1e-12)


def test_spec_reductions_between_losses():
    z1, z2, y = make_inputs(7, d=6, seed=3)
    classes = torch.tensor([0, 1, 0, 2, 1, 0, 2])
    distinct = torch.arange(7.0, dtype=torch.float64) * 10
    infonce = build_loss("infonce")(z1, z2)
    supcon = build_loss("supcon")(z1, z2, classes)
    close = torch.testing.assert_close
    close(build_loss("yaware")(z1, z2), infonce)
    close(build_loss("yaware", kernel="dirac")(z1, z2, distinct), infonce)
    close(build_loss("yaware", kernel="dirac")(z1, z2, classes), supcon)
    close(
        build_loss("yaware", kernel="dirac", normalize="col")(z1, z2, classes), supcon
    )
    close(build_loss("supcon")(z1, z2), infonce)
    close(
        build_loss("thr", kernel="dirac")(z1, z2, distinct), build_loss("dcl")(z1, z2)
    )
    close(build_loss("eps_supcon", epsilon=0.0)(z1, z2, classes), supcon)
    close(build_loss("eps_supinfonce", epsilon=0.0)(z1, z2), infonce)
    close(build_loss("infonce", reduction="sum_over_N")(z1, z2), 2 * infonce)
    close(
        build_loss("infonce", temperature=0.2, base_temperature=0.07)(z1, z2),
        build_loss("infonce", temperature=0.2)(z1, z2) * (0.2 / 0.07),
    )
    assert not torch.allclose(build_loss("yaware", sigma=5.0)(z1, z2, y), infonce)


def test_eps_supinfonce_strictly_decreasing_in_epsilon():
    z1, z2, _ = make_inputs(6, seed=4)
    classes = torch.tensor([0, 0, 1, 1, 2, 2])
    values = [
        build_loss("eps_supinfonce", epsilon=e)(z1, z2, classes).item()
        for e in (0.0, 0.1, 0.3, 0.5, 1.0)
    ]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("key", CONTRASTIVE)
def test_symmetric_in_views_and_invariant_to_subject_order(key):
    z1, z2, _ = make_inputs(6, d=4, seed=5)
    y = _labels(key, 6)
    loss = _build(key)
    ref = loss(z1, z2, y)
    torch.testing.assert_close(loss(z2, z1, y), ref)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(loss(z1[perm], z2[perm], y[perm]), ref)
    per_anchor = _build(key, reduction="none")(z1, z2, y)
    assert per_anchor.shape == (12,)
    torch.testing.assert_close(per_anchor.mean(), ref)


@pytest.mark.parametrize("key", CONTRASTIVE)
@pytest.mark.parametrize("case", ["random", "collinear", "one_subject", "one_class"])
def test_finite_values_and_gradients(key, case):
    n = 1 if case == "one_subject" else 5
    z1, z2, _ = make_inputs(n, d=4, seed=6)
    y = _labels(key, n)
    if case == "collinear":
        z1, z2 = torch.ones_like(z1), torch.ones_like(z2)
    if case == "one_class":
        y = torch.zeros_like(y)  # no negative at all
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    value = _build(key)(z1, z2, y)
    value.backward()
    assert (
        torch.isfinite(value)
        and torch.isfinite(z1.grad).all()
        and torch.isfinite(z2.grad).all()
    )


@pytest.mark.parametrize(
    "key", ["infonce", "eps_supcon", "yaware_col", "thr", "thr_code", "exp", "exp_code"]
)
def test_gradcheck_float64(key):
    z1, z2, _ = make_inputs(3, d=3, seed=7)
    y = _labels(key, 3)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = _build(key)
    assert torch.autograd.gradcheck(
        lambda a, b: loss(a, b, y), (z1, z2), eps=1e-6, atol=1e-5
    )


@pytest.mark.parametrize("key", CONTRASTIVE)
def test_float32_matches_float64_and_bf16_within_1e2(key):
    z1, z2, _ = make_inputs(16, d=32, seed=8)
    y = _labels(key, 16)
    loss = _build(key)
    ref = loss(z1, z2, y)
    f32 = loss(z1.float(), z2.float(), y)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), ref, rtol=1e-5, atol=1e-5)
    bf = loss(z1.bfloat16(), z2.bfloat16(), y)
    assert bf.dtype == torch.float32  # computed in float32
    assert abs(bf.item() - f32.item()) <= 1e-2
    torch.testing.assert_close(
        bf, loss(z1.bfloat16().float(), z2.bfloat16().float(), y)
    )


def test_callable_kernel_equals_named_kernel():
    z1, z2, y = make_inputs(5, seed=9)

    def my_rbf(a, b):
        return torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * 3.0**2))

    torch.testing.assert_close(
        build_loss("yaware", kernel=my_rbf)(z1, z2, y),
        build_loss("yaware", kernel="rbf", sigma=3.0)(z1, z2, y),
    )


def test_hyper_parameters_are_attributes_in_repr():
    loss = build_loss(
        "exp", temperature=0.2, sigma=[1.0, 2.0], variant="code", base_temperature=0.07
    )
    assert (
        loss.temperature == 0.2 and loss.sigma == [1.0, 2.0] and loss.variant == "code"
    )
    for text in (
        "temperature=0.2",
        "variant='code'",
        "base_temperature=0.07",
        "exclude_positive=True",
    ):
        assert text in repr(loss)
    assert build_loss("yaware").sigma == 5.0 and build_loss("thr").sigma == 2.0


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("infonce", {"temperature": 0.0}),
        ("infonce", {"temperature": -1.0}),
        ("infonce", {"temperature": float("nan")}),
        ("infonce", {"base_temperature": 0.0}),
        ("infonce", {"reduction": "sum"}),
        ("yaware", {"normalize": "both"}),
        ("yaware", {"sigma": 0.0}),
        ("yaware", {"sigma": [1.0, -2.0]}),
        ("yaware", {"kernel": "laplace"}),
        ("yaware", {"kernel": lambda a, b: a, "sigma": 2.0}),
        ("thr", {"variant": "mine"}),
        ("exp", {"variant": "paper2"}),
        ("eps_supinfonce", {"epsilon": -0.1}),
        ("fairkl", {"mode": "fast"}),
        ("fairkl", {"views": "second"}),
        ("fairkl", {"reduction": "none"}),
        ("fairkl", {"kld": -1.0}),
    ],
)
def test_invalid_hyper_parameters_raise(name, kwargs):
    with pytest.raises(ValueError):
        build_loss(name, **kwargs)


def test_wrong_shapes_raise_naming_them():
    z = torch.randn(4, 8)
    loss = build_loss("yaware")
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(3, 8\)"):
        loss(z, torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        loss(z, z, torch.randn(5))
    with pytest.raises(ValueError, match="2 dimensions"):
        build_loss("yaware", sigma=[1.0, 2.0, 3.0])(z, z, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"queue_z.*\(6, 7\)"):
        loss(z, z, torch.randn(4), queue_z=torch.randn(6, 7), queue_y=torch.randn(6))
    with pytest.raises(ValueError, match="queue_y"):
        loss(z, z, torch.randn(4), queue_z=torch.randn(6, 8))
    with pytest.raises(ValueError, match="N >= 1"):
        build_loss("infonce")(torch.randn(0, 8), torch.randn(0, 8))
    with pytest.raises(ValueError, match="bias"):
        build_loss("fairkl")(z, z, torch.randn(4))
