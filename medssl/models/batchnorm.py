"""BatchNorm bookkeeping for a batch that stands for ``copies`` identical copies of itself.

When every view of a step is the same tensor (views ``none``: the published L_exp / L_thr recipes),
the encoder need not see ``cat([x] * k)``: BatchNorm's batch mean and biased variance over the ``k``
copies equal those of ``x``, so the outputs (and, through them, the loss and the gradients) are the
same. Only the running variance differs: PyTorch stores the *unbiased* batch variance,
``var_b * n / (n - 1)`` with ``n`` values per channel, and ``n`` is ``k`` times larger for the copies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def repeated_batch_statistics(module: nn.Module, copies: int) -> Iterator[None]:
    """Inside, a training forward on ``x`` updates BatchNorm running statistics as one on
    ``cat([x] * copies)`` would.

    For each BatchNorm with momentum ``m`` that sees ``n`` values per channel, the update made,
    ``v1 = (1 - m) v0 + m var_b n / (n - 1)``, is rescaled after the forward to
    ``v0' + (v1 - v0') k (n - 1) / (k n - 1)`` with ``v0' = (1 - m) v0``, ``k = copies``: the running
    variance of the ``k n`` values. Running means need nothing. ``momentum=None`` (cumulative
    average) uses ``m = 1 / num_batches_tracked``.

    Examples:
        >>> bn = nn.BatchNorm1d(3)
        >>> x = torch.randn(4, 3)
        >>> with repeated_batch_statistics(bn, 2):
        ...     _ = bn(x)
        >>> twice = nn.BatchNorm1d(3)
        >>> _ = twice(torch.cat([x, x]))
        >>> torch.allclose(bn.running_var, twice.running_var)
        True
    """
    norms = [m for m in module.modules()
             if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    if copies == 1 or not norms:
        yield
        return
    before: dict[_BatchNorm, tuple[int, torch.Tensor]] = {}

    def remember(norm: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        before[norm] = (x.numel() // x.shape[1], norm.running_var.detach().clone())  # type: ignore[index]

    handles = [norm.register_forward_pre_hook(remember) for norm in norms]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for norm, (n, old) in before.items():
            m = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            kept = (1 - m) * old
            scale = copies * (n - 1) / (copies * n - 1)
            # .data: the forward saved running_var for its backward (which reads the batch statistics,
            # not the running ones); rescaling in place must not bump the version autograd checks
            norm.running_var.data.copy_(kept + (norm.running_var - kept) * scale)  # type: ignore[union-attr,operator]
