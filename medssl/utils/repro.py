"""Seeding and a record of the software a run used."""

from __future__ import annotations

import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_sha(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: the medssl sources), with a
    ``-dirty`` suffix when tracked files differ from it (the run did not run that commit), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head, status = (subprocess.run(cmd, cwd=where, capture_output=True, text=True, timeout=5)
                        for cmd in (["git", "rev-parse", "HEAD"],
                                    ["git", "status", "--porcelain", "--untracked-files=no"]))
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("-dirty" if status.returncode == 0 and status.stdout.strip() else "")


def environment_info() -> dict[str, Any]:
    """Versions of Python, medssl and its main dependencies, the git sha and the torch device."""
    versions = {}
    for name in ("medssl", "torch", "monai", "numpy", "scikit-learn", "nibabel", "nilearn", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_sha": git_sha(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
