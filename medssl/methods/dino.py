"""DINO: a student matches an EMA teacher's centred, sharpened soft outputs, with 3D multi-crop.

Student and teacher share the architecture ``backbone -> head (bottleneck d) -> L2-norm ->
prototypes (K, weight-normalised, DINO's norm_last_layer=True)``. The teacher sees the two global
views; the student sees them and ``n_local_crops`` local crops. Local crops are cut from the global
views on the device: a random box of ``U(local_crop_scale)`` of the volume (same fraction on each
axis), resampled trilinearly to ``local_crop_size`` x the global shape (one ``grid_sample`` call
for the whole batch, each sample its own box; half of the local crops come from each global view,
whereas DINO cuts local crops from the raw image with their own augmentations).
Schedules (per optimiser step k of K): teacher momentum ``cosine 0.996 -> 1`` as BYOL; teacher
temperature linear from ``warmup_teacher_temperature`` to ``teacher_temperature`` over the first
``teacher_warmup_fraction * K`` steps. Loss and centring: ``medssl.losses.dino``.

References:
    - [0] Caron et al., DINO, ICCV 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses.dino import DINOLoss
from medssl.methods.base import Method
from medssl.methods.common import check_views, head_out_dim, refuse_loss
from medssl.methods.monitoring import CollapseMonitor
from medssl.models.momentum import cosine_schedule, linear_warmup, momentum_copy, update_momentum
from medssl.registry import METHODS


class DINOPrototypes(nn.Module):
    """``(B, d) -> (B, K)``: cosine between the L2-normalised input and K unit-norm prototypes."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, dim) / dim**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T


def local_crops(
    x: torch.Tensor, n: int, scale: tuple[float, float], size: tuple[int, int, int]
) -> list[torch.Tensor]:
    """``n`` random crops of ``x`` (B, C, D, H, W), each resized to ``size``; per-sample boxes.

    A box covers a fraction ``v ~ U(scale)`` of the volume, i.e. ``v^(1/3)`` of every axis, at a
    uniform position inside the volume.
    """
    b = x.shape[0]
    crops = []
    for _ in range(n):
        volume = torch.empty(b, device=x.device).uniform_(*scale)
        side = volume.pow(1.0 / 3.0)  # fraction of each axis
        centre = (torch.rand(b, 3, device=x.device) * 2 - 1) * (1 - side)[:, None]
        theta = torch.zeros(b, 3, 4, device=x.device, dtype=x.dtype)
        theta[:, [0, 1, 2], [0, 1, 2]] = side[:, None].to(x.dtype)
        theta[:, :, 3] = centre.to(x.dtype)
        grid = F.affine_grid(theta, [b, x.shape[1], *size], align_corners=False)
        crops.append(F.grid_sample(x, grid, mode="bilinear", align_corners=False))
    return crops


@METHODS.register("dino")
class DINO(Method):
    """DINO self-distillation; the student ``backbone`` is the exported encoder.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F).
        head: student MLP (B, F) -> (B, d), d the bottleneck (DINO: 256).
        loss: must be None (DINO owns its objective).
        out_dim: K prototypes (DINO: 65536; 4096 suits small 3D cohorts).
        student_temperature: tau_s (0.1).
        teacher_temperature: tau_t after warm-up (DINO: 0.04-0.07).
        warmup_teacher_temperature: tau_t at step 0 (0.04).
        teacher_warmup_fraction: fraction of the run for the tau_t warm-up (DINO: 30 of 100 epochs).
        center_momentum: m of the centre EMA (0.9).
        momentum_base: teacher momentum at step 0, rising to 1 along a cosine (0.996).
        n_local_crops: local crops per sample (DINO: 6-10; 0 = two global views only).
        local_crop_scale: range of the volume fraction of a local crop (DINO's area range 0.05-0.4).
        local_crop_size: local crop side as a fraction of the global view's (DINO: 96/224).
        collapse_threshold: see ``CollapseMonitor`` (0 disables the warning).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        out_dim: int = 4096,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        teacher_warmup_fraction: float = 0.3,
        center_momentum: float = 0.9,
        momentum_base: float = 0.996,
        n_local_crops: int = 4,
        local_crop_scale: tuple[float, float] = (0.05, 0.4),
        local_crop_size: float = 0.5,
        collapse_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "dino")
        lo, hi = local_crop_scale
        if not 0 < lo <= hi <= 1 or not 0 < local_crop_size <= 1 or n_local_crops < 0:
            raise ValueError(
                f"need 0 < local_crop_scale[0] <= [1] <= 1, 0 < local_crop_size <= 1 and "
                f"n_local_crops >= 0, got {local_crop_scale}, {local_crop_size}, {n_local_crops}"
            )
        if min(teacher_temperature, warmup_teacher_temperature) <= 0:
            raise ValueError("teacher temperatures must be > 0")
        self.backbone = backbone
        self.head = head
        self.prototypes = DINOPrototypes(head_out_dim(head, backbone.num_features), out_dim)
        self.teacher = momentum_copy(self.student_network())
        self.criterion = DINOLoss(out_dim, student_temperature, center_momentum)
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.teacher_warmup_fraction = teacher_warmup_fraction
        self.momentum_base = momentum_base
        self.n_local_crops = n_local_crops
        self.local_crop_scale = (float(lo), float(hi))
        self.local_crop_size = local_crop_size
        # schedule state as buffers so that a resumed run continues the schedules exactly
        tau_0 = warmup_teacher_temperature if teacher_warmup_fraction > 0 else teacher_temperature
        self.register_buffer("tau_t", torch.tensor(tau_0))
        self.register_buffer("momentum", torch.tensor(momentum_base))
        self.monitor = CollapseMonitor(collapse_threshold)

    def student_network(self) -> nn.Sequential:
        """The student as one module (B, 1, D, H, W) -> (B, K), sharing this method's parameters."""
        return nn.Sequential(self.backbone, self.head, self.prototypes)

    def student(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bottleneck embedding (B, d), prototype scores (B, K)) of the student."""
        z = self.head(self.backbone(x))
        return z, self.prototypes(z)

    def local_views(self, global_views: list[torch.Tensor]) -> list[torch.Tensor]:
        """``n_local_crops`` local crops, the first ceil(n/2) from view 1, the others from view 2."""
        size = tuple(max(1, round(s * self.local_crop_size)) for s in global_views[0].shape[2:])
        counts = ((self.n_local_crops + 1) // 2, self.n_local_crops // 2)
        return [crop for view, n in zip(global_views, counts) if n
                for crop in local_crops(view, n, self.local_crop_scale, size)]  # type: ignore[arg-type]


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "dino")
        global_views = list(views[:2])
        with torch.no_grad():
            teacher_out = [self.teacher(v) for v in global_views]
            local_views = self.local_views(global_views)
        embeddings, student_out = zip(*(self.student(v) for v in global_views + local_views))
        out = {"loss": self.criterion(list(student_out), teacher_out, float(self.tau_t))}
        out.update(self.monitor(embeddings[0].detach(), "DINO student embeddings"))
        out["teacher_temperature"] = self.tau_t.clone()
        out["momentum"] = self.momentum.clone()
        return out

    def on_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher with the momentum of ``step``; tau_t for the next step."""
        tau = cosine_schedule(step, total_steps, self.momentum_base, 1.0)
        self.momentum.fill_(tau)
        update_momentum(self.student_network(), self.teacher, tau)
        warmup = round(self.teacher_warmup_fraction * total_steps)
        self.tau_t.fill_(linear_warmup(step + 1, warmup, self.warmup_teacher_temperature,
                                       self.teacher_temperature))
