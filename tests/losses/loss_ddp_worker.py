"""Worker of the 2-process gloo test (imported by name in spawned children; not a test module)."""

from __future__ import annotations

import torch

from medssl.losses import build_loss

N, D = 8, 5
CASES = [
    ("infonce", {}, False),
    ("infonce", {"reduction": "sum_over_N"}, False),
    ("dcl", {}, False),
    ("supcon", {}, True),
    ("eps_supinfonce", {"epsilon": 0.2}, True),
    ("eps_supcon", {"epsilon": 0.2}, True),
    ("yaware", {"sigma": 3.0}, False),
    ("yaware", {"sigma": 3.0, "normalize": "col", "reduction": "sum_over_N"}, False),
    ("yaware", {"sigma": 3.0, "queue": True}, False),
    ("thr", {"sigma": 3.0}, False),
    ("thr", {"sigma": 3.0, "variant": "code"}, False),
    ("exp", {"sigma": 3.0}, False),
    ("exp", {"sigma": 3.0, "variant": "code", "base_temperature": 0.07}, False),
    ("fairkl", {"kernel": "rbf", "sigma": 3.0}, False),
    ("fairkl", {"mode": "code", "views": "both"}, True),
    ("barlow_twins", {}, False),
    ("vicreg", {}, False),
]


def data():
    g = torch.Generator().manual_seed(123)
    z1, z2 = (
        torch.randn(N, D, generator=g, dtype=torch.float64),
        torch.randn(N, D, generator=g, dtype=torch.float64),
    )
    age = (20 + 5 * torch.randn(N, generator=g, dtype=torch.float64)).round()
    classes = torch.randint(0, 3, (N,), generator=g)
    site = torch.randint(0, 2, (N,), generator=g)
    qz, qy = (
        torch.randn(3, D, generator=g, dtype=torch.float64),
        20 + 5 * torch.randn(3, generator=g, dtype=torch.float64),
    )
    x = torch.randn(
        N, 2, 6, generator=g, dtype=torch.float64
    )  # inputs of a tiny shared encoder
    return z1, z2, age, classes, site, qz, qy, x


def run_case(name, kw, discrete, z1, z2, age, classes, site, qz, qy):
    """Loss value and input gradients for the given (local or whole) batch."""
    kw = dict(kw)
    queue = {"queue_z": qz, "queue_y": qy} if kw.pop("queue", False) else {}
    z1, z2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    value = build_loss(name, **kw)(z1, z2, classes if discrete else age, site, **queue)
    value.backward()
    return value.detach(), z1.grad, z2.grad


def encoder():
    torch.manual_seed(7)
    return torch.nn.Linear(6, 4).double()


def encoder_grads(model, x, age):
    z = model(x.reshape(-1, 6)).reshape(x.shape[0], 2, 4)
    build_loss("yaware", sigma=3.0)(z[:, 0], z[:, 1], age).backward()
    return [p.grad.clone() for p in model.parameters()]


def worker(rank: int, splits: list[list[int]]) -> list:
    """One rank's loss values and gradients for each split of the batch (run by tests/multiproc.py,
    which brings the gloo group up and down)."""
    z1, z2, age, classes, site, qz, qy, x = data()
    out = []
    for sizes in splits:  # one process group, several ways of splitting the batch
        start = sum(sizes[:rank])
        sl = slice(start, start + sizes[rank])
        results = [
            run_case(n, kw, disc, z1[sl], z2[sl], age[sl], classes[sl], site[sl], qz, qy)
            for n, kw, disc in CASES
        ]
        ddp = torch.nn.parallel.DistributedDataParallel(encoder())
        results.append(encoder_grads(ddp, x[sl], age[sl]))
        out.append(results)
    return out
