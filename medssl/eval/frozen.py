"""Proof that evaluation never changes an encoder: digests of every tensor of its ``state_dict``.

Weights *and* buffers (BatchNorm running mean/var, ``num_batches_tracked``) are hashed byte for byte, so
a forward pass left in train mode, an optimiser step or an in-place op on a parameter is caught.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch
from torch import nn

from medssl.errors import MedsslError


class FrozenWeightsError(MedsslError, RuntimeError):
    """An encoder's weights or buffers changed while it was supposed to be frozen."""


def tensor_digests(module: nn.Module) -> dict[str, str]:
    """SHA-256 of each ``state_dict`` entry (dtype, shape and raw bytes), keyed by its name."""
    out = {}
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def state_digest(module: nn.Module) -> str:
    """One SHA-256 over all entries of ``tensor_digests`` (sorted by name)."""
    h = hashlib.sha256()
    for name, digest in sorted(tensor_digests(module).items()):
        h.update(f"{name}:{digest};".encode())
    return h.hexdigest()


@contextlib.contextmanager
def assert_frozen(module: nn.Module) -> Iterator[str]:
    """Yield the digest of ``module``; on exit raise ``FrozenWeightsError`` naming any changed tensor."""
    before = tensor_digests(module)
    yield state_digest(module)
    after = tensor_digests(module)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        raise FrozenWeightsError(
            f"encoder state changed during evaluation in {len(changed)} tensor(s): "
            f"{', '.join(changed[:5])}{'...' if len(changed) > 5 else ''}; evaluation must run in eval "
            "mode without gradients (BatchNorm buffers included)"
        )
