"""Build the views of a preset for either backend: batched on the device, or per sample with MONAI."""

from __future__ import annotations

from typing import Any

import torch

from medssl.errors import ConfigError
from medssl.registry import VIEWS
from medssl.transforms.monai_views import monai_view_transform
from medssl.transforms.views import ViewAugmenter


class TwoViewsTransform:
    """Per-sample CPU path: apply a MONAI view pipeline twice to ``sample["image"]`` -> ``"views"``."""

    def __init__(self, transform: Any, n_views: int = 2) -> None:
        self.transform, self.n_views = transform, n_views

    def set_random_state(self, seed: int | None = None, state: Any = None) -> TwoViewsTransform:
        """Reseed the MONAI pipeline (the training loop does it per item, see engine/sampling.py)."""
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        views = [torch.as_tensor(self.transform({"image": sample["image"]})["image"])
                 for _ in range(self.n_views)]
        return {**sample, "views": views}


def build_views(preset: str, *, backend: str = "torch", device: str | torch.device = "cpu",
                **kwargs: Any) -> tuple[TwoViewsTransform | None, ViewAugmenter | None]:
    """``(per-sample CPU transform, batched augmenter on device)``, one of them None.

    ``backend="torch"``: a :class:`ViewAugmenter` for whole batches ``(B, 1, D, H, W)`` on ``device``;
    ``"monai"``: a dataset transform adding two MONAI views to each sample (DataLoader workers).
    Invalid settings raise ``ConfigError``.

    Examples:
        >>> import torch
        >>> _, augment = build_views("yaware")
        >>> augment(torch.randn(4, 1, 16, 16, 16)).shape
        torch.Size([4, 1, 16, 16, 16])
    """
    if backend not in ("torch", "monai"):
        raise ConfigError(f"views.backend={backend!r} must be 'torch' (batched on the device) or 'monai' "
                          "(per sample, in the DataLoader workers)")
    try:
        if backend == "monai":
            return TwoViewsTransform(monai_view_transform(preset, **kwargs)), None
        return None, VIEWS.build(preset, **kwargs).to(device)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid views settings: {exc}") from exc
