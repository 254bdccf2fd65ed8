"""Self-supervised losses on the core: SimCLR's NT-Xent (``infonce``) and decoupled InfoNCE (``dcl``).

Both ignore ``y`` (the only positive of an anchor is its other view).

- [0] Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, 2020,
  https://arxiv.org/abs/2002.05709
- [1] Yeh et al., Decoupled Contrastive Learning, 2022, https://arxiv.org/abs/2110.06848
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from medssl.losses.batch import ContrastBatch
from medssl.losses.core import DiracInfoNCE, masked_logsumexp
from medssl.registry import LOSSES


@LOSSES.register("infonce")
class InfoNCELoss(DiracInfoNCE):
    """NT-Xent: ``l_a = -s_aa' + log sum_{b != a} exp(s_ab)`` over the 2N view-major rows.

    Published default: SimCLR tau = 0.5 at batch 4096 (tau = 0.1 is medssl's default, the usual choice at
    small batch). Collinear embeddings give ``log(2N - 1)``.

    Examples:
        >>> import math, torch
        >>> from medssl.losses import build_loss
        >>> loss = build_loss("infonce", temperature=0.1)
        >>> z = torch.ones(8, 128)  # collinear: every candidate as similar as the positive
        >>> math.isclose(loss(z, z).item(), math.log(2 * 8 - 1), rel_tol=1e-6)
        True
    """

    uses_labels = False


@LOSSES.register("dcl")
class DCLLoss(InfoNCELoss):
    """Decoupled InfoNCE: ``l_a = -s_aa' + log sum_{b not in {a, a'}} exp(s_ab)``.

    The positive is removed from the denominator. With one subject (no negative) the loss is 0.
    Published default (Yeh 2022): tau = 0.1.
    """

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        negatives = ~(
            batch.column_mask(batch.anchor_index)
            | batch.column_mask(batch.partner_index)
        )
        return (
            s,
            masked_logsumexp(s, negatives, 1, keepdim=True),
            negatives.any(1, keepdim=True),
        )
