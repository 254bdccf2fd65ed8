"""medssl: self- and weakly-supervised contrastive pretraining of 3D medical-imaging encoders.

Importing the package fills every registry (backbones, heads, losses, kernels, views, methods, probes).
Data flow: ``data`` -> ``transforms`` -> ``models`` -> ``losses`` -> ``engine`` -> ``eval`` -> ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from medssl import losses, models, transforms  # noqa: E402,F401  (registration side effects)
