"""Every ``>>>`` example in medssl's docstrings and in the README runs, as written, and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medssl"
MODULES = sorted(
    ".".join(part for part in path.relative_to(PACKAGE.parent).with_suffix("").parts if part != "__init__")
    for path in PACKAGE.rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_examples_are_found() -> None:
    assert "medssl.losses.infonce" in MODULES and "medssl.config" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"


def test_readme_examples() -> None:
    readme = PACKAGE.parent / "README.md"
    result = doctest.testfile(str(readme), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0, f"README: {result.failed} of {result.attempted} failed"
