"""Supervised losses on the core (discrete ``y``): SupCon and the epsilon-margin losses.

Positives ``P(a) = {b != a : y_b = y_a}`` (the other view included), negatives ``N(a) = {b : y_b != y_a}``,
``omega = exp(-epsilon)``. Without ``y`` each subject is its own class (SimCLR positives).

- [0] Khosla et al., Supervised Contrastive Learning, 2020, https://arxiv.org/abs/2004.11362
- [1] Barbano et al., Unbiased Supervised Contrastive Learning, ICLR 2023,
  https://arxiv.org/abs/2211.05568
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from medssl.losses.batch import ContrastBatch
from medssl.losses.core import DiracInfoNCE, check_number, masked_logsumexp
from medssl.registry import LOSSES


@LOSSES.register("supcon")
class SupConLoss(DiracInfoNCE):
    """SupCon L_out: ``l_a = -1/|P(a)| sum_{p in P(a)} [s_ap - log sum_{b != a} exp(s_ab)]``.

    Anchors without positive contribute 0. Published defaults (Khosla 2020): tau = 0.1 (code: 0.07 with
    ``base_temperature=0.07``).
    """


class _EpsilonLoss(SupConLoss):
    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.0,
        base_temperature: float | None = None,
        reduction: str = "mean",
        gather: bool = True,
    ) -> None:
        super().__init__(temperature, base_temperature, reduction, gather)
        self.epsilon = check_number("epsilon", epsilon)

    def _repr_keys(self) -> list[str]:
        return ["epsilon"]


@LOSSES.register("eps_supinfonce")
class EpsSupInfoNCELoss(_EpsilonLoss):
    """epsilon-SupInfoNCE: ``l_a = -1/|P| sum_p [s_ap - log(omega e^{s_ap} + sum_{n in N(a)} e^{s_an})]``.

    Each positive competes only with the negatives. ``epsilon=0`` without ``y`` is ``infonce``; the loss
    strictly decreases with epsilon. Published defaults (Barbano 2023): tau = 0.1, epsilon in 0..0.5.
    """

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        negatives = ~batch.column_mask(batch.anchor_index) & (w == 0)
        neg = masked_logsumexp(s, negatives, 1, keepdim=True)
        margin = s - self.epsilon  # log(omega e^{s_ap})
        den = torch.where(
            negatives.any(1, keepdim=True), torch.logaddexp(margin, neg), margin
        )
        return s, den, torch.ones_like(s, dtype=torch.bool)


@LOSSES.register("eps_supcon")
class EpsSupConLoss(_EpsilonLoss):
    """epsilon-SupCon: ``l_a = -1/|P| sum_p [s_ap - log(omega sum_{p'} e^{s_ap'} + sum_n e^{s_an})]``.

    ``epsilon=0`` is ``supcon``. Published defaults (Barbano 2023): tau = 0.1, epsilon in 0..0.5.
    """

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        others = ~batch.column_mask(batch.anchor_index)
        shifted = torch.where(w > 0, s - self.epsilon, s)  # positives weighted by omega
        return (
            s,
            masked_logsumexp(shifted, others, 1, keepdim=True),
            others.any(1, keepdim=True),
        )
