"""Pieces shared by the studies: the study folder, the cohort, one (arm, seed) run, mean ± std tables."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import yaml

from medssl.config import StudyConfig, pretrain_config, to_dict
from medssl.data import make_synthetic_cohort, open_cohort
from medssl.errors import DataError, MedsslError, OutputExistsError
from medssl.pipelines.evaluate import evaluate
from medssl.pipelines.pretrain import pretrain
from medssl.utils.io import ensure_writable, write_json, write_text

CHALLENGE_KEYS = ("mae_internal", "rmse_internal", "mae_external", "bacc_site", "site_chance",
                  "challenge_score")


class StudyBudgetError(MedsslError):
    """Nothing a study reports could be run within its time budget."""


@dataclasses.dataclass
class Budget:
    """A study's wall-clock budget: a run starts only while the time left exceeds the longest run so far.

    ``seconds=None`` is no budget. Runs that do not fit are recorded in ``skipped`` (and in the study's
    summary), never half-run; the loops go seed by seed, so what fits covers every arm at fewer seeds.
    """

    seconds: float | None = None
    clock: Callable[[], float] = time.perf_counter
    longest: float = 0.0
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()

    def allows(self, what: str) -> bool:
        """True when ``what`` may start now; else it is recorded as skipped."""
        if self.left() > self.longest:
            return True
        self.skipped.append(what)
        return False

    def timed(self, run: Any, *args: Any, **kwargs: Any) -> Any:
        """``run(*args, **kwargs)``, its duration counted towards ``longest``."""
        t0 = self.clock()
        try:
            return run(*args, **kwargs)
        finally:
            self.longest = max(self.longest, self.clock() - t0)


def open_study_folder(cfg: StudyConfig, out: Path, overwrite: bool) -> Path:
    """Create ``out`` (or resume it when it holds the same study); writes ``out/study.yaml``.

    Raises:
        OutputExistsError: ``out`` holds something else (another study config, or no study.yaml).
    """
    resolved = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    record = out / "study.yaml"
    if overwrite:
        ensure_writable(out, overwrite=True)
    elif out.is_dir() and any(out.iterdir()):
        if not record.is_file() or record.read_text() != resolved:
            raise OutputExistsError(f"{out} holds another study (its study.yaml differs or is missing); "
                                    "pass --overwrite to replace it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text(record, resolved)
    return out


def study_cohort(cfg: StudyConfig, out: Path) -> Path:
    """The pretraining cohort: ``cohort.source``, else a synthetic one written once to ``out/data/<cohort>``."""
    c = cfg.cohort
    if c.source:
        return Path(c.source)

    root = out / "data" / c.cohort
    if not (root / "synthetic.json").is_file():
        make_synthetic_cohort(root, c.cohort, c.n_subjects, c.n_sites, c.n_external_sites, tuple(c.shape),
                              c.seed, layout="hf", overwrite=True, preset=c.preset, device=c.device,
                              modalities=[c.modality])
    return root


def cohort_check(source: Path, modality: str) -> dict[str, Any]:
    """Age coverage of the splits and the MAE of the constant predictor (the training mean age).

External ages outside the training range make MAE_ext measure extrapolation; an encoder whose MAE is
not below the constant predictor's has learnt no usable age information.
"""
    table = open_cohort(source, modality=modality).table
    train = table[table.split == "train"].age
    ext = table[table.split == "external_test"].age
    outside = float(((ext < train.min()) | (ext > train.max())).mean()) if len(ext) else 0.0
    internal = table[table.split == "internal_test"].age
    constant = {f"mae_constant_{name}": float((part - train.mean()).abs().mean()) if len(part) else None
                for name, part in (("internal", internal), ("external", ext))}
    return {**constant, "n": {s: int((table.split == s).sum()) for s in sorted(table.split.unique())},
            "n_sites": int(table.site.nunique()), "train_age": [float(train.min()), float(train.max())],
            "external_age": [float(ext.min()), float(ext.max())] if len(ext) else None,
            "external_outside_train_range": outside, "degenerate": outside > 0.1}


def run_arm(cfg: StudyConfig, arm: dict[str, Any], data: Path, seed: int, run_dir: Path,
            baselines: bool = False) -> dict[str, Any]:
    """Pretrain one arm at one seed (resumed if interrupted) and evaluate it with the challenge probes.

    A run whose ``eval/metrics.json`` exists is not redone. Returns the evaluation metrics plus
    ``pretrain_seconds``.
    """
    metrics_file = run_dir / "eval" / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    t0 = time.perf_counter()
    fresh = not (run_dir / "checkpoints" / "last.pt").is_file()  # else: same config -> resumed
    pretrain(pretrain_config(cfg, arm, data, seed, run_dir), overwrite=fresh)
    seconds = time.perf_counter() - t0
    kwargs = {"batch_size": 16, **cfg.evaluate}
    metrics = evaluate(run_dir, data, out=run_dir / "eval", overwrite=True, progress=False,
                       baselines=baselines, **kwargs)
    metrics["pretrain_seconds"] = seconds

    write_json(metrics_file, metrics)
    return metrics


def check_finite(frame: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    """``DataError`` naming the arm and seed of the first NaN/inf among ``keys``."""
    values = frame[list(keys)].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = frame.iloc[int(np.argwhere(bad)[0][0])]
        raise DataError(f"{what}: non-finite result in row {row.to_dict()}")


def aggregate(frame: pd.DataFrame, by: Sequence[str], keys: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1; 0 for one seed) and seed count of ``keys`` per ``by`` group, input order kept."""
    groups = frame.groupby(list(by), sort=False)
    stats = groups[list(keys)].agg(["mean", "std"])
    stats.columns = [f"{k}_{s}" for k, s in stats.columns]
    stats = stats.fillna({c: 0.0 for c in stats.columns if c.endswith("_std")})
    stats["n_seeds"] = groups.size()
    return stats.reset_index()


def pm_table(stats: pd.DataFrame, by: Sequence[str], keys: Sequence[str], scale: dict[str, float] | None = None,
             digits: int = 2) -> str:
    """Markdown table of ``mean ± std`` cells (``scale`` multiplies a key, e.g. 100 for % BAcc)."""
    scale = scale or {}
    head = [*by, *keys, "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in stats.itertuples(index=False):
        r = row._asdict()
        cells = [str(r[b]) for b in by]
        for k in keys:
            f = scale.get(k, 1.0)
            cells.append(f"{r[k + '_mean'] * f:.{digits}f} ± {r[k + '_std'] * f:.{digits}f}")
        lines.append("| " + " | ".join(cells + [str(r["n_seeds"])]) + " |")
    return "\n".join(lines)


def compare(stats: pd.DataFrame, key: str, better: str, worse: str, by: str = "arm",
            lower_is_better: bool = True) -> dict[str, Any]:
    """Is arm ``better`` better than arm ``worse`` on ``key`` (means), and is the gap beyond seed noise?

    Beyond noise: ``|gap| > sqrt(sd_better² + sd_worse²)`` (one pooled standard deviation of the two
    seed distributions; a rough guard, not a significance test).
    """
    rows = stats.set_index(by)
    if better not in rows.index or worse not in rows.index:
        return {"held": None, "detail": f"arm {better!r} or {worse!r} not in this study"}
    m1, s1 = rows.at[better, key + "_mean"], rows.at[better, key + "_std"]
    m2, s2 = rows.at[worse, key + "_mean"], rows.at[worse, key + "_std"]
    gap = (m2 - m1) if lower_is_better else (m1 - m2)
    noise = float(np.hypot(s1, s2))
    seeds = int(min(rows.at[better, "n_seeds"], rows.at[worse, "n_seeds"])) if "n_seeds" in rows else 2
    spread = f"pooled seed sd {noise:.3f}" if seeds >= 2 else "one seed: the seed spread is unknown"
    return {"held": bool(gap > 0), "beyond_noise": bool(abs(gap) > noise) if seeds >= 2 else None, "gap": float(gap),
            "noise": noise,
            "detail": f"{key}: {better} {m1:.3f} ± {s1:.3f} vs {worse} {m2:.3f} ± {s2:.3f} "
                      f"(gap {abs(gap):.3f} in favour of {better if gap > 0 else worse}; {spread})"}


def verdict_lines(hypotheses: list[dict[str, Any]]) -> list[str]:
    """Markdown bullets: held / did not hold / not tested, and whether the gap exceeds seed noise."""
    lines = []
    for h in hypotheses:
        if h["held"] is None:
            status = "NOT TESTED"
        else:
            status = "HELD" if h["held"] else "DID NOT HOLD"
            beyond = h.get("beyond_noise")
            status += "" if beyond else " (one seed: noise unknown)" if beyond is None else " (within seed noise)"
        lines.append(f"- **{status}** — {h['hypothesis']}: {h['detail']}")
    return lines


def data_lines(check: dict[str, Any]) -> list[str]:
    """Markdown bullets describing the cohort check (and a warning when it is degenerate)."""
    lines = [f"- scans per split: {check['n']}; sites: {check['n_sites']}",
             f"- training ages {check['train_age'][0]:.1f}-{check['train_age'][1]:.1f}; external ages "
             f"{check['external_age'][0]:.1f}-{check['external_age'][1]:.1f}" if check["external_age"] else
             "- no external test split",
             f"- external scans outside the training age range: {100 * check['external_outside_train_range']:.0f} %",
             f"- constant predictor (training mean age): MAE internal {check['mae_constant_internal']:.2f}, "
             f"external {check['mae_constant_external'] or float('nan'):.2f} — a representation must beat this"]
    if check["degenerate"]:
        lines.append("- **WARNING**: more than 10 % of external ages lie outside the training range; "
                     "external MAE then measures extrapolation, not site robustness")
    return lines
