"""medssl: self- and weakly-supervised contrastive pretraining of 3D medical-imaging encoders.

Registries (backbones, heads, losses, kernels, views, methods, probes) fill themselves on first use.
Data flow: ``data`` -> ``transforms`` -> ``models`` -> ``losses`` -> ``engine`` -> ``eval`` -> ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"
