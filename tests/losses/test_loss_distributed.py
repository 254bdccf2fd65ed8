"""Two gloo processes on halves of a batch reproduce the single-process loss and gradients.

Documented scale (medssl.utils.distributed): the mean over ranks of the returned losses is the
single-process loss; each rank's input embeddings receive world_size x the single-process gradient, so
DDP's averaged parameter gradients equal the single-process ones (checked with a DDP-wrapped encoder).
"""

from __future__ import annotations

import pytest
import torch
from loss_ddp_worker import CASES, data, encoder, encoder_grads, run_case, worker
from multiproc import run_ranks

from medssl.utils.distributed import (
    gather_with_grad,
    get_rank,
    get_world_size,
    is_distributed,
)


def test_single_process_helpers_are_no_ops():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_two_gloo_processes_match_one_process(tmp_path):
    """Equal halves (4, 4) and unequal parts (5, 3) of an 8-subject batch, every loss."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    outputs = run_ranks(worker, 2, tmp_path, args=([[4, 4], [5, 3]],))
    for split in range(2):
        _compare([out[split] for out in outputs])


def _compare(ranks):
    z1, z2, age, classes, site, qz, qy, x = data()
    world = 2
    for i, (name, kw, disc) in enumerate(CASES):
        value, g1, g2 = run_case(name, kw, disc, z1, z2, age, classes, site, qz, qy)
        mean_value = sum(r[i][0] for r in ranks) / world
        torch.testing.assert_close(
            mean_value, value, rtol=1e-10, atol=1e-12, msg=f"value {name} {kw}"
        )
        got1 = torch.cat([r[i][1] for r in ranks]) / world
        got2 = torch.cat([r[i][2] for r in ranks]) / world
        torch.testing.assert_close(
            got1, g1, rtol=1e-9, atol=1e-12, msg=f"grad z1 {name} {kw}"
        )
        torch.testing.assert_close(
            got2, g2, rtol=1e-9, atol=1e-12, msg=f"grad z2 {name} {kw}"
        )
    single = encoder_grads(encoder(), x, age)
    for rank in (
        ranks
    ):  # DDP averaged the parameter gradients: identical on both ranks and exact
        for got, want in zip(rank[-1], single):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
