"""3D views: batched torch augmentations on device, and per-sample MONAI dict transforms.

Which backend (config ``views.backend``):

- ``torch`` (default): ``VIEWS.build(preset, **kw)`` -> :class:`ViewAugmenter`, applied by the training
  loop to whole batches on the GPU with per-sample parameters. DataLoader workers then only read and
  z-score. This is the path that keeps a GPU fed: per-sample MONAI views on CPU workers cannot keep up
  with 3D training on a GPU (the costs are in benchmarks/README.md, "Design figures").
- ``monai``: ``monai_view_transform(preset, **kw)`` -> MONAI ``Compose`` on key ``"image"``, applied per
  sample in CPU workers. For CPU-only training, or to check the torch path against MONAI. Do not feed
  MONAI transforms a batch: they have no per-sample parameters (RandFlip on ``(B, 1, ...)`` silently
  flips the channel axis, noise gets one std for the batch, several fail outright).

On CPU the torch path is also faster per volume than MONAI's (``benchmarks/bench_views.py``).
"""

from __future__ import annotations

from medssl.transforms.base import RandomOp
from medssl.transforms.build import TwoViewsTransform, build_views
from medssl.transforms.monai_views import monai_transform, monai_view_transform
from medssl.transforms.views import PRESETS, OpSpec, ViewAugmenter, preset_ops

__all__ = [
    "PRESETS",
    "OpSpec",
    "RandomOp",
    "TwoViewsTransform",
    "ViewAugmenter",
    "build_views",
    "monai_transform",
    "monai_view_transform",
    "preset_ops",
]
