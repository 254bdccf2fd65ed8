"""Every command of the README's quickstart runs, in order, in a fresh folder (the user's path)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from multiproc import Commands

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", text, re.S)
    assert block, "README has no Quickstart bash block"
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            commands.extend(part.strip() for part in line.split("&&"))
    return commands


def test_readme_install_lines_match_ci() -> None:
    first_lines = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[:2]
    assert first_lines[0].endswith("medssl demo") and "torch==2.13.0" in first_lines[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert first_lines[1] in ci, ".ci/run must run exactly the README's test command"


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path: Path, commands: Commands) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "MEDSSL_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "MEDSSL_CACHE": str(tmp_path / "cache")}
    quickstart = quickstart_commands()
    assert quickstart[0] == "medssl demo"
    # the demo is exercised by its own test at a smaller size; run everything after it here
    for i, command in enumerate(quickstart[1:], start=1):
        argv = shlex.split(command)
        assert argv[0] == "medssl"
        commands.run(f"{i}-{argv[1]}", [sys.executable, "-m", "medssl.cli", *argv[1:]], 240,
                     env=env, cwd=tmp_path)
    assert (tmp_path / "runs/tiny/eval/metrics.json").exists()
    assert (tmp_path / "submissions/tiny/estimator.py").exists()
    assert (tmp_path / "runs/ft_scz/metrics.json").exists()
