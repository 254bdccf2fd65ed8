"""``medssl`` subcommands of the data group."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this group's subcommands to the ``medssl`` parser."""
