"""Shared test fixtures: everything is CPU, tiny and synthetic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from multiproc import Commands

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Commands]:
    """CLI processes with deadlines and logs, killed at the end of the test (``tests/multiproc.py``)."""
    started = Commands(tmp_path / "logs")
    yield started
    started.close()
