"""Progress bars: on in a terminal or Jupyter, off in a redirected log (MEDSSL_PROGRESS forces either)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.utils import progress

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("flag,stderr,expected", [
    (None, io.StringIO(), False),  # redirected: no bar
    (None, Terminal(), True),
    ("0", Terminal(), False),
    ("1", io.StringIO(), True),
])
def test_bars_follow_the_terminal_unless_forced(flag: str | None, stderr: io.StringIO, expected: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSSL_PROGRESS", raising=False)
    if flag is not None:
        monkeypatch.setenv("MEDSSL_PROGRESS", flag)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert progress.progress_enabled() is expected
    bar = progress.progress_bar(range(3), file=stderr)
    assert bar.disable is not expected
    assert list(bar) == [0, 1, 2]  # a disabled bar still iterates
    assert ("\r" in stderr.getvalue()) is expected


@pytest.mark.parametrize("widgets,expected", [(True, "tqdm.notebook"), (False, "tqdm.std")])
def test_jupyter_uses_the_widget_bar_only_with_ipywidgets(widgets: bool, expected: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(progress, "in_jupyter", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (find_spec(name, *a) if widgets else None) if name == "ipywidgets"
                        else find_spec(name, *a))
    if widgets:
        pytest.importorskip("ipywidgets")
    assert progress._bar_class().__module__ == expected


@pytest.mark.slow
def test_a_redirected_pretraining_log_holds_epoch_lines_and_no_bar_frames(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEDSSL_PROGRESS"}
    env.update(OMP_NUM_THREADS="1", MEDSSL_CACHE=str(tmp_path / "cache"))
    with (tmp_path / "log.txt").open("w") as log:
        done = subprocess.run([sys.executable, "-m", "medssl.cli", "pretrain",
                               str(ROOT / "configs/debug/tiny_cpu.yaml"), f"out={tmp_path / 'run'}",
                               "data.synthetic_subjects=24", "data.synthetic_shape=[16,16,16]",
                               "model.width=4", "train.batch_size=8", "train.tensorboard=false"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=240)
    text = (tmp_path / "log.txt").read_text()
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text
    assert "epoch 1/2: loss " in text and "epoch 2/2: loss " in text
