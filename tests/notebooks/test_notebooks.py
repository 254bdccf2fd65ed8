"""Every notebook executes at tiny size (MEDSSL_TINY=1), is paired with its percent script, and is stripped."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
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


@pytest.mark.parametrize("name", NAMES)
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
