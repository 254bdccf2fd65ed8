"""Batches moved to the device one step ahead, on a side CUDA stream.

A copy issued with ``non_blocking=True`` on the compute stream still waits its turn behind that step's
kernels (its measured share of a step: benchmarks/README.md, "Design figures"). :func:`device_batches`
issues the copy of batch ``k + 1`` on a second stream before handing batch ``k`` to the step, so the copy
engine runs while the GPU computes. Ordering: the compute stream waits for the side stream before it uses
a batch, and every tensor of the batch is ``record_stream``-ed on the compute stream so the caching
allocator does not hand its memory out again while the step still reads it (the pattern of NVIDIA's Apex
``data_prefetcher``).
Off CUDA it is a plain loop over ``move(batch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

Batch = dict[str, Any]


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def side_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A copy stream for :func:`device_batches` on a CUDA ``device`` (None elsewhere). Make it once per
    run: the caching allocator reuses a freed block only on the stream that allocated it, so a new
    stream per epoch would strand the previous epoch's batch memory in the cache."""
    return torch.cuda.Stream(device) if device.type == "cuda" else None


def device_batches(batches: Iterable[Batch], move: Callable[[Batch], Batch],
                   side: torch.cuda.Stream | None) -> Iterator[Batch]:
    """Yield ``move(batch)`` for each batch; with a CUDA ``side`` stream the next batch's ``move``
    runs on it, overlapping this step.

    Args:
        batches: host batches (pinned memory for truly asynchronous copies).
        move: host batch -> device batch (``non_blocking`` copies, layout changes).
        side: the copy stream (:func:`side_stream`); None moves each batch when it is asked for.

    Memory: three batches can be alive on the device at once (the one the previous step may still
    be reading, the current one, the next one in flight), one more than moving in the step.
    """
    if side is None:
        yield from (move(batch) for batch in batches)
        return
    host_batches = iter(batches)

    def issue() -> Batch | None:
        host = next(host_batches, None)
        if host is None:
            return None
        with torch.cuda.stream(side):
            return move(host)

    ahead = issue()
    while ahead is not None:
        compute = torch.cuda.current_stream(side.device)
        compute.wait_stream(side)
        for tensor in _tensors(ahead):
            tensor.record_stream(compute)
        batch, ahead = ahead, issue()
        yield batch
