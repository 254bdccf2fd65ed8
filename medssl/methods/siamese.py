"""``siamese``: the contrastive method behind SimCLR, SupCon, y-aware, ε-InfoNCE, L_thr, L_exp, FairKL.

These recipes share one architecture and one training step and differ only by their objective:
``backbone -> head -> loss(z1, z2, y=batch[label], bias=batch[bias])``.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.methods.base import Method
from medssl.models.batchnorm import repeated_batch_statistics
from medssl.registry import METHODS


@METHODS.register("siamese")
class SiameseContrastive(Method):
    """Two views of each subject through one shared encoder + projector, then a contrastive loss.

    Both views go through the network in one forward pass of ``2B`` volumes, so BatchNorm sees the
    whole contrastive batch (as in SimCLR). ``embed`` / ``embedding_loss`` split the step for the
    gradient cache (``train.grad_cache_chunk``): BatchNorm then sees both views of one chunk of subjects.

    Args:
        backbone: ``(B, 1, D, H, W) -> (B, F)``; exported as the encoder after training.
        head: projector ``(B, F) -> (B, d)``.
        loss: ``loss(z1, z2, y=None, bias=None)`` returning a scalar or a dict with ``"loss"``.
        label: batch key fed as ``y`` (``"age"`` for y-aware / L_thr / L_exp; None for SimCLR).
        bias: batch key fed as ``bias`` (``"site"`` for FairKL; None otherwise).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module,
        label: str | None = None,
        bias: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.loss = backbone, head, loss
        self.label, self.bias = label, bias

    def embed(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Views ``[(B, 1, D, H, W)] * 2`` -> embeddings ``[(B, d)] * 2``, in ONE forward of ``2B``.

        Identical views (the same tensor twice, as views ``none`` gives) run the backbone once on
        ``B``: the same embeddings, gradients and BatchNorm statistics as ``2B`` copies (to float
        rounding; see :mod:`medssl.models.batchnorm`), for half the backbone's work. The head, a few
        small layers, still sees the ``2B`` rows.
        """
        if len(views) != 2:
            raise ValueError(f"siamese needs exactly 2 views, got {len(views)}")
        if views[1] is views[0]:
            with repeated_batch_statistics(self.backbone, 2):
                features = self.backbone(views[0])
            return list(self.head(torch.cat([features, features])).chunk(2))
        return list(self.head(self.backbone(torch.cat(views))).chunk(2))

    def embedding_loss(
        self, batch: dict[str, torch.Tensor], embeddings: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``loss(z1, z2, y=batch[label], bias=batch[bias])`` as ``{"loss": ..., **scalars}``."""
        z1, z2 = embeddings
        y = batch[self.label] if self.label else None
        bias = batch[self.bias] if self.bias else None
        out = self.loss(z1, z2, y=y, bias=bias)
        return out if isinstance(out, dict) else {"loss": out}

    def training_step(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return self.embedding_loss(batch, self.embed(views))
