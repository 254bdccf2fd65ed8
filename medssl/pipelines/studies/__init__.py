"""``run_study``: the seed lecture's experiments end to end, one YAML per study (see docs/studies.md).

Studies: ``regression`` (3.5: contrastive losses for brain age with site removal), ``transfer`` (3.4:
fine-tuning SCZ/BD/ASD from several initialisations, with the label-fraction curve) and ``sensitivity``
(sigma x tau grid of the kernel losses). Each writes into its folder::

    study.yaml        resolved study config (a re-run with the same config resumes; else --overwrite)
    runs.csv          one row per arm x seed (x task x size): the raw numbers
    table.csv/.md     mean ± std over seeds per arm
    summary.md        command, cohort check, table, hypothesis verdicts, published context, figures
    results.json      everything above, machine-readable
    figures/*.png     runs/seed<k>/<arm>/ (pretraining runs + eval), data/ (synthetic cohorts)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.config import STUDIES, StudyConfig, load_study
from medssl.pipelines.studies import regression, sensitivity, transfer
from medssl.pipelines.studies.common import Budget, data_lines, open_study_folder, verdict_lines
from medssl.utils.io import atomic_path, write_json, write_text
from medssl.utils.repro import environment_info

__all__ = ["STUDIES", "StudyConfig", "StudyResult", "load_study", "run_study"]


@dataclasses.dataclass
class StudyResult:
    """What a study produced: its folder, the per-run rows, the per-arm summary and the verdicts."""

    out: Path
    runs: pd.DataFrame
    stats: pd.DataFrame
    hypotheses: list[dict[str, Any]]
    figures: dict[str, Path]
    markdown: str


def run_study(cfg: StudyConfig, out: str | Path | None = None, *, overwrite: bool = False,
              command: str | None = None, budget_s: float | None = None) -> StudyResult:
    """Run every arm and seed of ``cfg`` into ``out`` (default ``cfg.out``) and write the results.

    ``command`` is the exact command line recorded in ``summary.md`` (the CLI passes its own).
    ``budget_s``: wall-clock seconds; runs that would not fit are skipped and listed in the summary
    (a re-run with more time completes them: finished runs are reused).
    """
    if out is not None:
        cfg = dataclasses.replace(cfg, out=str(out))
    budget = Budget(budget_s)
    folder = open_study_folder(cfg, Path(cfg.out), overwrite)
    result = {"regression": regression.run, "transfer": transfer.run,
              "sensitivity": sensitivity.run}[cfg.study](cfg, folder, budget)
    seconds = budget.elapsed()
    result["skipped"] = budget.skipped
    markdown = _summary(cfg, result, command, seconds)
    with atomic_path(folder / "runs.csv") as tmp:
        result["runs"].to_csv(tmp, index=False)
    with atomic_path(folder / "table.csv") as tmp:
        result["stats"].to_csv(tmp, index=False)
    write_text(folder / "table.md", result["table"] + "\n")
    write_text(folder / "summary.md", markdown)
    write_json(folder / "results.json", {
        "study": cfg.study, "scale": cfg.scale, "command": command, "seconds": seconds,
        "budget_s": budget_s, "skipped": budget.skipped,
        "data_check": result["data_check"], "hypotheses": result["hypotheses"],
        "table": result["stats"].to_dict(orient="records"),
        "figures": {k: str(v.relative_to(folder)) for k, v in result["figures"].items()}})
    return StudyResult(folder, result["runs"], result["stats"], result["hypotheses"], result["figures"],
                       markdown)


def _summary(cfg: StudyConfig, result: dict[str, Any], command: str | None, seconds: float) -> str:
    """The study's report page (markdown)."""
    env = environment_info()
    folder = Path(cfg.out)
    lines = [f"# {cfg.study} study ({cfg.scale} scale)", "", cfg.description.strip(), "",
             f"- command: `{command or 'run_study(...)'}`",
             f"- seeds: {cfg.seeds}; arms: {', '.join(cfg.arms)}; wall time of this invocation "
             f"{seconds / 60:.1f} min (finished runs are reused); pretraining time summed over runs "
             f"{result['runs'].get('pretrain_seconds', pd.Series(dtype=float)).sum() / 60:.1f} min",
             f"- environment: python {env.get('python')}, torch {env.get('versions', {}).get('torch')}, "
             f"medssl {env.get('versions', {}).get('medssl')}, git {env.get('git_sha')}, cuda {env.get('cuda')}",
             "", "## Cohort", "", f"- source: {cfg.cohort.source or 'synthetic ' + cfg.cohort.cohort} "
             f"(shape {cfg.cohort.shape}, {cfg.cohort.n_subjects} subjects)" if not cfg.cohort.source
             else f"- source: {cfg.cohort.source}", *data_lines(result["data_check"]),
             "", "## Results (mean ± std over seeds)", "", result["table"], "", *result["extra"],
             *(["", f"Not run, for lack of time in the budget: {', '.join(result['skipped'])}."]
               if result["skipped"] else []),
             "", "## Hypotheses from the seed lecture", "", *verdict_lines(result["hypotheses"]),
             "", "## Figures", "",
             *[f"![{k}]({v.relative_to(folder)})" for k, v in result["figures"].items()],
             "", "## Published numbers (context only)", "", result["published"], ""]
    return "\n".join(lines)
