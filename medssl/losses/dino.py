"""DINO self-distillation loss: cross-entropy between a sharpened, centred teacher and a student.

For teacher outputs ``t`` (global views only) and student outputs ``s`` (all views), both (N, K):

    P_t = softmax((t - c) / tau_t),   log P_s = log_softmax(s / tau_s)            (seed eq. 20)
    L = mean over pairs (i teacher view, v student view, v != i) of
        mean_n [ -sum_k P_t[i]_nk log P_s[v]_nk ]                                 (seed eq. 21)

and after each loss the centre follows an EMA of the teacher's batch mean (seed eq. 23):
``c <- m c + (1 - m) mean_n t_n`` (averaged over every teacher view and, when
``torch.distributed`` is initialised, over every process). The teacher temperature is an argument of
``forward`` so that the method owns its warm-up schedule.

References:
    - [0] Caron et al., DINO, ICCV 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from medssl.losses.batch import without_autocast


class DINOLoss(nn.Module):
    """DINO loss with an EMA centre buffer (saved in checkpoints).

    Args:
        out_dim: K, the number of output dimensions (prototypes).
        student_temperature: tau_s (DINO: 0.1).
        center_momentum: m of the centre EMA (DINO: 0.9).

    Examples:
        >>> loss = DINOLoss(out_dim=16)
        >>> t, s = [torch.randn(4, 16)] * 2, [torch.randn(4, 16)] * 3
        >>> loss(s, t, teacher_temperature=0.04).ndim
        0
    """

    center: torch.Tensor

    def __init__(
        self, out_dim: int, student_temperature: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if student_temperature <= 0:
            raise ValueError(f"student_temperature must be > 0, got {student_temperature}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.out_dim = out_dim
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def extra_repr(self) -> str:
        return (f"out_dim={self.out_dim}, student_temperature={self.student_temperature}, "
                f"center_momentum={self.center_momentum}")

    @without_autocast
    def forward(
        self,
        student_out: list[torch.Tensor],
        teacher_out: list[torch.Tensor],
        teacher_temperature: float,
    ) -> torch.Tensor:
        """Loss over (teacher view i, student view v != i) pairs; then updates the centre.

        The first ``len(teacher_out)`` student views are the same global views as the teacher's.
        """
        if teacher_temperature <= 0:
            raise ValueError(f"teacher_temperature must be > 0, got {teacher_temperature}")
        if not teacher_out or len(student_out) < 2:
            raise ValueError("DINO needs >= 1 teacher view and >= 2 student views")
        for out in (*student_out, *teacher_out):
            if out.ndim != 2 or out.shape[1] != self.out_dim:
                raise ValueError(
                    f"DINO outputs must be (N, {self.out_dim}), got {tuple(out.shape)}")
        dtype = torch.promote_types(student_out[0].dtype, torch.float32)
        teacher_probs = [
            F.softmax((t.detach().to(dtype) - self.center) / teacher_temperature, dim=1)
            for t in teacher_out
        ]
        student_logp = [F.log_softmax(s.to(dtype) / self.student_temperature, dim=1)
                        for s in student_out]
        total, pairs = student_logp[0].new_zeros(()), 0
        for i, p_t in enumerate(teacher_probs):
            for v, logp_s in enumerate(student_logp):
                if v == i:
                    continue
                total = total - (p_t * logp_s).sum(dim=1).mean()
                pairs += 1
        self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: list[torch.Tensor]) -> None:
        """``c <- m c + (1 - m) * mean`` of all teacher rows (all-reduced across processes)."""
        stacked = torch.cat([t.detach().float() for t in teacher_out])
        batch_sum = stacked.sum(dim=0, keepdim=True)
        count = torch.tensor(float(stacked.shape[0]), device=stacked.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
