"""OpenBHB challenge submissions: export a pretrained encoder as a RAMP submission and check it locally.

``export_openbhb(source, out)`` writes ``estimator.py`` + ``weights.pth`` + ``metadata.pkl``;
``check_submission(folder, kit_root)`` runs them as the RAMP server does and returns the four scores.
"""

from __future__ import annotations

from medssl.submit.check import check_submission, import_submission
from medssl.submit.export import export_openbhb, render_estimator
from medssl.submit.sanitize import check_source, find_violations

__all__ = [
    "check_source", "check_submission", "export_openbhb", "find_violations", "import_submission",
    "render_estimator",
]
