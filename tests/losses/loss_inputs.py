"""Input generators for the loss tests (float64, tiny)."""

from __future__ import annotations

import torch


def make_inputs(
    n: int,
    d: int = 5,
    scenario: str = "random",
    discrete: bool = False,
    m: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
):
    """z1, z2 (n, d); y (n,) or (n, m): integer classes, or continuous with ties (scenario 'ties')."""
    g = torch.Generator().manual_seed(seed + 97 * n)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = torch.randn(n, d, generator=g, dtype=dtype)
    if discrete:
        y = torch.randint(0, 3 if scenario != "ties" else 2, (n,), generator=g)
    elif scenario == "ties":
        y = torch.randint(20, 23, (n, m), generator=g).to(dtype)
    else:
        y = 20 + 5 * torch.randn(n, m, generator=g, dtype=dtype)
    if not discrete and m == 1:
        y = y.reshape(n)
    if scenario == "identical":
        z2 = z1.clone()
    if scenario == "ties" and n > 2:
        z1[1] = z1[0]  # duplicated rows and a shared label
        z2[2] = z1[0]
        y[1] = y[0]
    return z1, z2, y


def make_queue(
    mq: int, d: int, discrete: bool, m: int = 1, seed: int = 1, dtype=torch.float64
):
    g = torch.Generator().manual_seed(1000 + seed)
    qz = torch.randn(mq, d, generator=g, dtype=dtype)
    if discrete:
        qy = torch.randint(0, 3, (mq,), generator=g)
    else:
        qy = 20 + 5 * torch.randn(mq, m, generator=g, dtype=dtype)
        qy = qy.reshape(mq) if m == 1 else qy
    return qz, qy


def to_lists(t):
    return None if t is None else t.tolist()
