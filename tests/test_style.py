"""No line of the project's Python is longer than the line length ``pyproject.toml`` gives ruff
(``[tool.ruff] line-length``); checked in plain Python, so CI needs no ruff."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("medssl", "tests", "benchmarks", "experiments")


def configured_line_length() -> int:
    """``[tool.ruff] line-length`` of pyproject.toml."""
    return int(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"])


def long_lines(path: Path, limit: int) -> list[int]:
    """Numbers (from 1) of the lines of ``path`` longer than ``limit`` characters."""
    return [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > limit]


def test_no_line_is_longer_than_the_configured_line_length() -> None:
    limit = configured_line_length()
    too_long = [f"{path.relative_to(ROOT)}:{i}" for folder in FOLDERS
                for path in sorted((ROOT / folder).rglob("*.py")) for i in long_lines(path, limit)]
    assert not too_long, f"lines longer than {limit} characters (pyproject.toml's [tool.ruff] line-length):\n" + (
        "\n".join(too_long))


def test_the_checker_sees_a_line_one_character_too_long(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("x = 1\n" + "y = '" + "a" * 114 + "'\n" + "z = '" + "b" * 115 + "'\n")
    assert long_lines(module, 120) == [3]
