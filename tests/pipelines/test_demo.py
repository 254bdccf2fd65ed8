"""``medssl demo`` at a reduced size: every arm is trained, evaluated and compared."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import medssl.pipelines.demo as demo_module


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "DEMO_COHORT", {**demo_module.DEMO_COHORT, "n_subjects": 60,
                                                     "shape": (16, 20, 16)})
    results = demo_module.demo(tmp_path / "demo", epochs=1)
    assert {"simclr", "yaware", "raw voxels"} <= set(results)
    for arm in ("simclr", "yaware"):
        assert math.isfinite(results[arm]["challenge_score"])
        assert (tmp_path / "demo" / arm / "encoder.pt").exists()
    table = (tmp_path / "demo" / "comparison.md").read_text()
    assert "| yaware |" in table and "| simclr |" in table
