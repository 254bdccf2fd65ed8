"""Every loss and variant against an independent float64 double loop (rtol 1e-6)."""

from __future__ import annotations

import pytest
import torch
from loss_inputs import make_inputs, make_queue, to_lists
from loss_reference import reference_loss

from medssl.losses import build_loss

# (name, kwargs, discrete labels?, label dimensions)
CONFIGS = [
    ("infonce", {}, False, 1),
    ("infonce", {"temperature": 0.5, "base_temperature": 0.07}, False, 1),
    ("dcl", {}, False, 1),
    ("supcon", {}, True, 1),
    ("eps_supinfonce", {"epsilon": 0.0}, True, 1),
    ("eps_supinfonce", {"epsilon": 0.3}, True, 1),
    ("eps_supcon", {"epsilon": 0.0}, True, 1),
    ("eps_supcon", {"epsilon": 0.3, "base_temperature": 0.07}, True, 1),
    ("yaware", {"kernel": "rbf", "sigma": 1.5}, False, 1),
    ("yaware", {"kernel": "rbf", "sigma": 1.5, "normalize": "col"}, False, 1),
    ("yaware", {"kernel": "gaussian", "sigma": 2.0}, False, 1),
    ("yaware", {"kernel": "cauchy", "sigma": 0.3}, False, 1),
    ("yaware", {"kernel": "dirac"}, False, 1),
    ("yaware", {"kernel": "rbf", "sigma": [1.0, 3.0]}, False, 2),
    (
        "yaware",
        {"kernel": "gaussian", "sigma": [1.0, 3.0], "normalize": "col"},
        False,
        2,
    ),
    ("thr", {"kernel": "rbf", "sigma": 2.0}, False, 1),
    ("thr", {"kernel": "rbf", "sigma": 2.0, "variant": "code"}, False, 1),
    ("thr", {"kernel": "dirac"}, False, 1),
    ("thr", {"kernel": "cauchy", "sigma": 0.5, "variant": "code"}, False, 2),
    ("exp", {"kernel": "rbf", "sigma": 2.0}, False, 1),
    ("exp", {"kernel": "rbf", "sigma": 2.0, "exclude_positive": False}, False, 1),
    (
        "exp",
        {"kernel": "rbf", "sigma": 0.5, "temperature": 0.02},
        False,
        1,
    ),  # one dominant term
    ("thr", {"kernel": "rbf", "sigma": 0.5, "temperature": 0.02}, False, 1),
    (
        "exp",
        {"kernel": "rbf", "sigma": 2.0, "variant": "code", "base_temperature": 0.07},
        False,
        1,
    ),
    ("exp", {"kernel": "rbf", "sigma": [2.0, 1.0], "variant": "code"}, False, 2),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _, _ in CONFIGS]


def _check(name, kw, discrete, m, scenario, n, queue, reduction="mean", labelled=True):
    z1, z2, y = make_inputs(n, scenario=scenario, discrete=discrete, m=m)
    y = y if labelled else None
    qz, qy = make_queue(3, z1.shape[1], discrete, m) if queue else (None, None)
    loss = build_loss(name, reduction=reduction, **kw)
    got = loss(z1, z2, y, queue_z=qz, queue_y=qy if labelled else None)
    ref = reference_loss(
        name,
        to_lists(z1),
        to_lists(z2),
        to_lists(y),
        to_lists(qz),
        to_lists(qy),
        reduction=reduction,
        **kw,
    )
    torch.testing.assert_close(
        got, torch.as_tensor(ref, dtype=torch.float64), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("scenario", ["random", "ties", "identical"])
@pytest.mark.parametrize("name,kw,discrete,m", CONFIGS, ids=IDS)
def test_matches_double_loop(name, kw, discrete, m, scenario):
    for n in (1, 3, 6):
        _check(name, kw, discrete, m, scenario, n, queue=False)
    _check(name, kw, discrete, m, scenario, 4, queue=True)


@pytest.mark.parametrize("name,kw,discrete,m", CONFIGS, ids=IDS)
def test_reductions_and_unlabelled_match_double_loop(name, kw, discrete, m):
    for reduction in ("none", "sum_over_N"):
        _check(name, kw, discrete, m, "ties", 5, queue=False, reduction=reduction)
    _check(name, kw, discrete, m, "random", 4, queue=True, reduction="none")
    _check(name, kw, discrete, m, "random", 4, queue=False, labelled=False)
    _check(name, kw, discrete, m, "random", 4, queue=True, labelled=False)
