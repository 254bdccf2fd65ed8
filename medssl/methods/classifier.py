"""``classifier``: a pretrained (or random) encoder plus a linear head, trained with cross-entropy.

Fine-tuning recipes are freeze policies over the backbone's *stages*, the ordered blocks found by
:func:`backbone_stages` (input -> output):

- ``linear``: every backbone parameter frozen, the backbone kept in eval mode (BatchNorm statistics
  frozen too); only the head learns.
- ``partial``: the last ``partial_stages`` stages (or the explicit ``unfreeze`` name prefixes) learn, the
  earlier ones are frozen and kept in eval mode.
- ``full``: everything learns; with ``lr_decay < 1`` stage ``i`` of ``S`` gets the learning rate
  ``lr * lr_decay ** (S - i)`` and the head ``lr`` (layer-wise lr decay, BEiT-style).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import Method
from medssl.registry import METHODS

FreezePolicy = Literal["linear", "partial", "full"]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def backbone_stages(backbone: nn.Module) -> list[list[str]]:
    """The backbone's stages in forward order, each a list of submodule names.

    Descends through a lone parameter-holding child (e.g. ``features``); then each container child
    is a stage, and runs of consecutive parameter-holding leaves (conv, BN) form one stage, closed by a
    parameter-free module (ReLU, pooling). So ``tiny_cnn3d`` has 4 stages (conv+BN blocks), a ResNet
    ``[conv1, bn1], [layer1], ..., [layer4]`` and a DenseNet ``[conv0, norm0], [denseblock1],
    [transition1], ..., [denseblock4], [norm5]`` (under ``features.``). Parameters held directly by the
    backbone belong to the first stage.
    """
    prefix, module = "", backbone
    while True:
        children = [(n, c) for n, c in module.named_children() if _has_params(c)]
        if len(children) != 1 or any(True for _ in module.parameters(recurse=False)):
            break
        name, module = children[0]
        prefix = f"{prefix}{name}."
    stages: list[list[str]] = []
    run: list[str] = []
    for name, child in module.named_children():
        if not _has_params(child) or any(True for _ in child.children()):
            if run:
                stages.append(run)
            run = []
            if _has_params(child):
                stages.append([prefix + name])
        else:
            run.append(prefix + name)
    return stages + [run] if run else stages


def stage_index(param_name: str, stages: list[list[str]]) -> int:
    """Index of the stage holding ``param_name`` (0 for parameters outside every stage)."""
    for i, stage in enumerate(stages):
        if param_name.startswith(tuple(m + "." for m in stage)):
            return i
    return 0


@METHODS.register("classifier")
class Classifier(Method):
    """``logits = W · dropout(backbone(x)) + b``, loss = class-weighted cross-entropy.

    Args:
        backbone: ``(B, 1, D, H, W) -> (B, F)`` with ``num_features = F``.
        num_classes: K (2 for diagnosis vs control).
        freeze: ``linear``, ``partial`` or ``full`` (see the module docstring).
        class_weights: (K,) weights ``w_k`` of ``CE = sum_i w_{y_i} (-log p_{i, y_i}) / sum_i w_{y_i}``;
            None = unweighted.
        lr_decay: layer-wise lr decay factor in (0, 1]; 1 gives every group the base lr.
        partial_stages: how many of the last stages ``partial`` unfreezes.
        unfreeze: explicit parameter-name prefixes that ``partial`` unfreezes (overrides
            ``partial_stages``), e.g. ``["layer4."]``.
        dropout: dropout probability on the features before the head.
        label: batch key of the integer class labels (B,).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 2,
        freeze: FreezePolicy = "full",
        class_weights: list[float] | torch.Tensor | None = None,
        lr_decay: float = 1.0,
        partial_stages: int = 2,
        unfreeze: list[str] | None = None,
        dropout: float = 0.0,
        label: str = "label",
    ) -> None:
        super().__init__()
        if freeze not in ("linear", "partial", "full"):
            raise ConfigError(f"finetune.recipe must be linear, partial or full, got {freeze!r}")
        if not 0.0 < lr_decay <= 1.0:
            raise ConfigError(f"finetune.lr_decay must be in (0, 1], got {lr_decay}")
        self.backbone, self.freeze, self.lr_decay, self.label = backbone, freeze, lr_decay, label
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(backbone.num_features), num_classes)
        self.stages = backbone_stages(backbone)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.trainable_prefixes = self._trainable_prefixes(partial_stages, unfreeze)
        for name, param in backbone.named_parameters():
            param.requires_grad_(name.startswith(tuple(self.trainable_prefixes)))

    def _trainable_prefixes(self, partial_stages: int, unfreeze: list[str] | None) -> list[str]:
        if self.freeze == "linear":
            return []
        if self.freeze == "full":
            return [""]
        if unfreeze:
            names = [n for n, _ in self.backbone.named_parameters()]
            unknown = [p for p in unfreeze if not any(n.startswith(p) for n in names)]
            if unknown:
                raise ConfigError(
                    f"finetune.unfreeze prefixes {unknown} match no backbone parameter; stages are "
                    f"{self.stages}"
                )
            return list(unfreeze)
        if not 1 <= partial_stages <= len(self.stages):
            raise ConfigError(
                f"finetune.partial_stages={partial_stages} must be in [1, {len(self.stages)}] "
                f"(backbone stages: {self.stages})"
            )
        return [m + "." for stage in self.stages[-partial_stages:] for m in stage]

    def frozen_modules(self) -> list[nn.Module]:
        """Backbone submodules with parameters, none of them trainable (kept in eval mode)."""
        out = []
        for module in self.backbone.modules():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(module)
        return out

    def train(self, mode: bool = True) -> "Classifier":
        """Train mode everywhere except the frozen backbone parts (their BatchNorm stats stay fixed)."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters grouped by stage with ``lr_scale = lr_decay ** (S - i)``; head scale 1."""
        n = len(self.stages)
        by_stage: dict[int, list[nn.Parameter]] = {}
        for name, param in self.backbone.named_parameters():
            if param.requires_grad:
                by_stage.setdefault(stage_index(name, self.stages), []).append(param)
        groups = [{"params": params, "lr_scale": self.lr_decay ** (n - i)}
                  for i, params in sorted(by_stage.items())]
        return groups + [{"params": list(self.head.parameters()), "lr_scale": 1.0}]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W) -> (B, K)`` class scores."""
        return self.head(self.dropout(self.backbone(x)))

    def training_step(
        self, batch: dict[str, torch.Tensor], views: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        logits = self.logits(views[0]).float()  # the loss in fp32 under autocast
        return {"loss": F.cross_entropy(logits, batch[self.label].long(), weight=self.class_weights)}

