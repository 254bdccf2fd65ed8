"""The ``medssl`` command itself: ``--version``, and ``medssl list`` describing what it lists."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from medssl import __version__, registry
from medssl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_names_medssl_and_torch() -> None:
    done = subprocess.run([sys.executable, "-m", "medssl.cli", "--version"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0
    assert done.stdout.strip().startswith(f"medssl {__version__} (torch {metadata.version('torch')}, python ")
    assert __version__ == metadata.version("medssl")  # pyproject reads its version from medssl.__version__


@pytest.mark.parametrize("kind,reg", [("losses", registry.LOSSES), ("backbones", registry.BACKBONES),
                                      ("views", registry.VIEWS), ("probes", registry.PROBES)])
def test_list_gives_each_component_its_docstring_line(kind: str, reg: registry.Registry,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{kind}:" and len(lines) == 1 + len(reg.names())
    for name, line in zip(reg.names(), lines[1:]):
        doc = reg.get(name).__doc__.strip().splitlines()[0].replace("``", "")
        assert line.split() == [name, *doc.split()]


def test_list_recipes_says_what_each_reproduces(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["list", "recipes"]) == 0
    printed = capsys.readouterr().out
    recipes = sorted(ROOT.glob("configs/**/*.yaml"))
    assert len(recipes) > 10
    lines = {line.split()[0]: line for line in printed.splitlines()[1:]}
    assert sorted(lines) == [str(p.relative_to(ROOT)) for p in recipes]
    assert "Schizophrenia vs healthy controls (seed lecture, section 3.4: N_train = 933, internal and external " \
           "test AUC over 3 repeats, DenseNet121 baseline)" in lines["configs/finetune/scz.yaml"]
    assert lines["configs/pretrain/simclr_densenet121.yaml"].endswith(
        "SimCLR (NT-Xent, Chen et al. 2020) baseline with the y-aware recipe's backbone, views and optimiser.")
    assert lines["configs/pretrain/byol_resnet18.yaml"].endswith(  # a trailing comma or colon is dropped
        "BYOL (Grill et al., NeurIPS 2020) on 3D VBM: online ResNet-18-3D + projector + predictor, EMA target")
