"""Scaling on paper: predicted DDP throughput at 2..64 GPUs from a measured single-GPU step.

Model (an alpha-beta model of ring collectives; the link figures are assumptions, not measurements):

- all-gather of ``b`` bytes per rank over ``W`` ranks: ``(W - 1) (alpha + b / bw)``;
- all-reduce of ``n`` bytes: ``2 (W - 1) (alpha + n / (W bw))``;
- ``W <= 8``: one node, NVLink (H100 SXM: ~360 GB/s achievable bus bandwidth, alpha 5 us);
  ``W > 8``: the inter-node link bounds the ring (8 x 400 Gb/s NDR per 8-GPU node: ~40 GB/s per GPU,
  alpha 15 us).

One step with DDP = the measured single-GPU step + the gathers of medssl's losses (forward: the
offset, z1, z2 (normalised, fp32) and labels, each a size exchange and a data all-gather; backward: one
all-reduce of the gathered gradient per view) + the loss's extra cost (anchors stay local, candidates are
global: ``b (W - 1) n^2`` with ``a + b N^2`` fitted to the measured single-process loss times) + the
exposed part of DDP's gradient all-reduce (fp32 gradients; hidden behind the backward, taken as 2/3 of
the step, except the last 25 MB bucket).
"""

from __future__ import annotations

from typing import Any

LINKS = {"nvlink": {"bw": 360e9, "alpha": 5e-6}, "ib": {"bw": 40e9, "alpha": 15e-6}}
GPUS_PER_NODE = 8
BUCKET_BYTES = 25 * 2**20


def link_for(world: int) -> dict[str, float]:
    return LINKS["nvlink" if world <= GPUS_PER_NODE else "ib"]


def all_gather_s(bytes_per_rank: float, world: int) -> float:
    """Ring all-gather time: ``(W - 1) (alpha + b / bw)`` (0 for one rank)."""
    link = link_for(world)
    return (world - 1) * (link["alpha"] + bytes_per_rank / link["bw"])


def all_reduce_s(nbytes: float, world: int) -> float:
    """Ring all-reduce time: ``2 (W - 1) (alpha + n / (W bw))`` (0 for one rank)."""
    link = link_for(world)
    return 2 * (world - 1) * (link["alpha"] + nbytes / (world * link["bw"]))


def fit_quadratic(points: dict[int, float]) -> tuple[float, float]:
    """``(a, b)`` with ``t(N) = a + b N^2`` through the smallest and largest measured ``N``."""
    (n0, t0), (n1, t1) = min(points.items()), max(points.items())
    if n1 == n0:
        return t0, 0.0
    b = max(0.0, (t1 - t0) / (n1**2 - n0**2))
    return t0 - b * n0**2, b


def gather_s(subjects: int, dim: int, world: int, emb_bytes: int = 4) -> float:
    """The loss's gathers in one step: offset, z1, z2 (``emb_bytes`` per value), labels (fp32)."""
    sizes = 4 * all_gather_s(8, world)  # the size exchange of each gather_with_grad call
    data = all_gather_s(8, world) + 2 * all_gather_s(subjects * dim * emb_bytes, world) \
        + all_gather_s(subjects * 4, world)
    backward = 2 * all_reduce_s(world * subjects * dim * emb_bytes, world)
    return sizes + data + backward


def predict(
    step_s: float, subjects: int, n_params: int, loss_s: dict[int, float], dim: int = 128,
    worlds: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), backward_frac: float = 2 / 3,
) -> dict[str, Any]:
    """Predicted volumes/s (2 views per subject) and scaling efficiency at each world size.

    Args:
        step_s: measured single-GPU step time at ``subjects`` subjects per GPU.
        n_params: trainable parameters (fp32 gradients are all-reduced).
        loss_s: measured loss forward+backward seconds by number of subjects N.
    """
    a, b = fit_quadratic(loss_s)
    rows = []
    for world in worlds:
        t_gather = gather_s(subjects, dim, world)
        t_loss = b * (world - 1) * subjects**2
        t_ar = all_reduce_s(4 * n_params, world)
        exposed = 0.0 if world == 1 else max(t_ar - backward_frac * step_s,
                                             t_ar * min(1.0, BUCKET_BYTES / (4 * n_params)))
        step = step_s + t_gather + t_loss + exposed
        worst = step_s + t_gather + t_loss + t_ar
        rows.append({
            "gpus": world, "link": "nvlink" if world <= GPUS_PER_NODE else "ib",
            "gather_ms": round(1e3 * t_gather, 3), "loss_extra_ms": round(1e3 * t_loss, 3),
            "grad_allreduce_ms": round(1e3 * t_ar, 2), "exposed_allreduce_ms": round(1e3 * exposed, 2),
            "vol_per_s": round(world * 2 * subjects / step, 1),
            "vol_per_s_no_overlap": round(world * 2 * subjects / worst, 1),
            "efficiency": round(step_s / step, 3),
        })
    last = rows[-1]
    terms = {"contrastive gather": last["gather_ms"], "loss at the global batch": last["loss_extra_ms"],
             "exposed gradient all-reduce": last["exposed_allreduce_ms"]}
    return {"rows": rows, "links": LINKS, "loss_fit_a_s": a, "loss_fit_b_s": b,
            "largest_overhead_at_max": max(terms, key=terms.get)}
