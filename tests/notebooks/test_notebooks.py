"""Every notebook executes at tiny size (MEDSSL_TINY=1), is paired with its percent script, and is stripped;
the README's command to run one works with the ``notebooks`` extra."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart", "02_finetune_clinical", "03_openbhb_challenge", "04_site_effects"]


@pytest.mark.parametrize("name", NAMES)
def test_paired_and_stripped(name: str) -> None:
    import jupytext

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    hint = f"re-sync: jupytext --sync notebooks/{name}.py"
    assert [c.source for c in nb.cells] == [c.source for c in script.cells], hint
    assert [c.cell_type for c in nb.cells] == [c.cell_type for c in script.cells]
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}.ipynb: strip the outputs"


@pytest.mark.parametrize("name", NAMES[1:])  # 01 runs through the README's command below
def test_notebook_executes_tiny(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("MEDSSL_TINY", "1")
    monkeypatch.setenv("MEDSSL_NB_OUT", str(tmp_path))
    monkeypatch.setenv("MEDSSL_PROGRESS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("execute_result", "display_data") for o in outputs)
    assert os.listdir(tmp_path / name)  # wrote under MEDSSL_NB_OUT, not into the repository


def readme_notebook_commands() -> list[str]:
    """The bash block of the README's notebook paragraph (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Studies and notebooks.*?```bash\n(.*?)```", text, re.S)
    assert block, "README's 'Studies and notebooks' section has no bash block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_notebooks_extra_has_what_the_readme_command_needs() -> None:
    install, run = readme_notebook_commands()
    assert install == 'pip install -e ".[notebooks]"' and run.startswith("jupytext --to ipynb --execute")
    extra = re.search(r"^notebooks = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    assert extra, "pyproject.toml has no notebooks extra"
    names = {re.split(r"[<>=\[ ]", r.strip().strip('"'))[0] for r in extra.group(1).split(",") if r.strip()}
    # jupytext --execute runs nbconvert's preprocessor on an ipykernel kernel; widget bars need ipywidgets
    assert {"jupytext", "nbconvert", "ipykernel", "ipywidgets"} <= names


@pytest.mark.slow
def test_the_readme_notebook_command_runs(tmp_path: Path) -> None:
    pytest.importorskip("nbconvert")
    _, run = readme_notebook_commands()
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    env = {k: v for k, v in os.environ.items() if k not in ("MEDSSL_NB_OUT", "MEDSSL_PROGRESS")}
    env.update(MEDSSL_TINY="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    done = subprocess.run(shlex.split(run), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(tmp_path / "runs/notebooks/01_quickstart.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" for o in outputs)
    text = nbformat.writes(executed)
    assert "IProgress not found" not in text and "TqdmWarning" not in text
    assert os.listdir(tmp_path / "runs/notebooks/01_quickstart")  # outputs beside the executed copy
