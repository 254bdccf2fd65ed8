"""Progress bars: every bar medssl draws is made here, so one switch governs them all.

``MEDSSL_PROGRESS=1`` forces bars on, ``MEDSSL_PROGRESS=0`` off; unset, bars are drawn when stderr is a
terminal or in a Jupyter kernel, and not in a redirected log (where each refresh would be a ``\\r`` frame).
In Jupyter the widget bar is used when ipywidgets is installed (``pip install medssl[notebooks]``), else
the text bar (never tqdm's ``IProgress not found`` fallback). Lines written with :func:`progress_write`
(epoch summaries) are printed either way, without breaking a bar that is being drawn.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any


def in_jupyter() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_enabled() -> bool:
    """``MEDSSL_PROGRESS`` (``0``/``1``) if set, else whether stderr is a terminal or a Jupyter kernel."""
    flag = os.environ.get("MEDSSL_PROGRESS", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return sys.stderr.isatty() or in_jupyter()


def _bar_class() -> Any:
    if in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm  # deferred: which tqdm is chosen at run time
    else:
        from tqdm.std import tqdm  # deferred: which tqdm is chosen at run time
    return tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or with ``total=``), drawn only when ``enabled`` and
    :func:`progress_enabled`; a disabled bar still iterates and accepts ``update``/``set_postfix``."""
    return _bar_class()(iterable, disable=not (enabled and progress_enabled()), **kwargs)


def progress_write(line: str) -> None:
    """Print ``line`` to stdout above any bar being drawn."""
    _bar_class().write(line)
