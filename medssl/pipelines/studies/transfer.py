"""Study 2, transfer (seed lecture 3.4): fine-tune SCZ/BD/ASD classifiers from several initialisations.

Per seed, every arm (SimCLR, y-aware, Model Genesis, VAE, age-supervised, ...) is pretrained on the
healthy cohort; then, per task, ``medssl finetune`` trains from scratch and from each encoder (one repeat
at that seed) and scores the internal and external AUC, at every ``train.n_labelled`` size (the
label-fraction curve). The headline is the largest size.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.config import FinetuneConfig, StudyConfig, from_dict, load_yaml, merge, pretrain_config, resolve_file
from medssl.data import make_synthetic_cohort, open_cohort
from medssl.errors import ConfigError, MedsslWarning
from medssl.pipelines.finetune import finetune
from medssl.pipelines.pretrain import pretrain
from medssl.pipelines.studies import figures
from medssl.pipelines.studies.common import (
    Budget,
    StudyBudgetError,
    aggregate,
    check_finite,
    cohort_check,
    compare,
    pm_table,
    study_cohort,
)

KEYS = ("auc_internal", "auc_external")
PUBLISHED = """Published AUC % (seed lecture 3.4, Dufumier et al.; real data, DenseNet121 pretrained on 8754 healthy
scans, mean ± std over 3 runs). Context only, NOT comparable with synthetic cohorts:

| task | test | scratch | y-aware | Model Genesis | SimCLR | VAE | age sup. |
|---|---|---|---|---|---|---|---|
| SCZ | int | 85.27 ± 1.60 | 85.17 ± 0.37 | 76.31 ± 1.77 | 82.31 ± 2.03 | 82.56 ± 0.68 | 83.05 ± 1.36 |
| SCZ | ext | 75.52 ± 0.12 | 77.00 ± 0.55 | 67.40 ± 1.59 | 75.48 ± 2.54 | 75.11 ± 1.65 | 74.36 ± 2.28 |
| BD | int | 76.49 ± 2.16 | 78.81 ± 2.48 | 76.25 ± 1.48 | 72.71 ± 2.06 | 71.61 ± 0.81 | 77.21 ± 1.00 |
| BD | ext | 68.57 ± 4.72 | 77.06 ± 1.90 | 65.66 ± 0.90 | 71.23 ± 3.05 | 71.70 ± 0.23 | 73.02 ± 2.66 |
| ASD | int | 65.74 ± 1.47 | 66.36 ± 1.14 | 63.58 ± 4.35 | 61.92 ± 1.67 | 59.67 ± 2.04 | 67.11 ± 1.76 |
| ASD | ext | 62.93 ± 2.40 | 68.76 ± 1.70 | 54.95 ± 3.58 | 61.93 ± 1.93 | 57.45 ± 0.81 | 62.07 ± 2.98 |"""


def pretrain_encoder(cfg: StudyConfig, arm: dict[str, Any], data: Path, seed: int, run_dir: Path) -> Path:
    """Pretrain one arm (skipped when ``encoder.pt`` exists; resumed when interrupted)."""
    if not (run_dir / "encoder.pt").is_file():
        fresh = not (run_dir / "checkpoints" / "last.pt").is_file()
        pretrain(pretrain_config(cfg, arm, data, seed, run_dir), overwrite=fresh)
    return run_dir


def task_cohort(cfg: StudyConfig, task: str, out: Path, data: Path) -> Path:
    """``transfer.sources[task]``, else a synthetic clinical cohort at the pretraining cohort's grid.

    With an existing pretraining cohort (``cohort.source``) and no clinical source, the clinical cohort is
    synthesised at that cohort's image shape, with a warning: its AUCs say nothing about real patients.
    """
    if task in cfg.transfer.sources:
        return Path(cfg.transfer.sources[task])

    shape = tuple(cfg.cohort.shape)
    if cfg.cohort.source:
        shape = tuple(open_cohort(data, modality=cfg.cohort.modality).image_shape)
        warnings.warn(f"transfer.sources has no cohort for task {task!r}: fine-tuning on a synthetic {task} "
                      f"cohort at {'x'.join(map(str, shape))} (give transfer.sources.{task}=MANIFEST for real "
                      "patients)", MedsslWarning, stacklevel=2)
    t, root = cfg.transfer, out / "data" / task
    if not (root / "synthetic.json").is_file():
        make_synthetic_cohort(root, task, t.n_subjects, t.n_sites, t.n_external_sites, shape,
                              cfg.cohort.seed, layout="nifti", overwrite=True, device=cfg.cohort.device,
                              modalities=[cfg.cohort.modality])
    return root


def finetune_task(cfg: StudyConfig, task: str, source: Path, inits: list[str], model: dict[str, Any],
                  seed: int, run_dir: Path) -> dict[str, Any]:
    """One ``finetune`` call (all inits, every size, one repeat at ``seed``); returns its metrics.json."""
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    raw: dict[str, Any] = {}
    if cfg.transfer.base:
        base = resolve_file(cfg.transfer.base.format(task=task))
        if not base.is_file():
            raise ConfigError(f"transfer.base {base} does not exist")
        raw = load_yaml(base.read_text()) or {}
    raw = merge(merge(raw, {"model": model}), cfg.transfer.finetune)
    raw = merge(raw, {"data": {"source": str(source), "modality": cfg.cohort.modality},
                      "task": {"positive": task}, "init": inits, "train": {"seed": seed},
                      "finetune": {"repeats": 1}, "out": str(run_dir)})
    finetune(from_dict(FinetuneConfig, raw), overwrite=True)
    return json.loads((run_dir / "metrics.json").read_text())


def hypotheses(stats: pd.DataFrame) -> list[dict[str, Any]]:
    """Per task: y-aware beats scratch and SimCLR on external AUC (the seed's reading of its table)."""
    out = []
    for task, part in stats.groupby("task", sort=False):
        for other in ("scratch", "simclr"):
            out.append({"hypothesis": f"{task}: y-aware init has a higher external AUC than {other}",
                        **compare(part, "auc_external", "yaware", other, by="init", lower_is_better=False)})
    return out


def run(cfg: StudyConfig, out: Path, budget: Budget) -> dict[str, Any]:
    """Pretrain every arm x seed, fine-tune every task x init x size, as far as ``budget`` allows;
    aggregate over seeds."""
    data = study_cohort(cfg, out)
    model = pretrain_config(cfg, next(iter(cfg.arms.values())), data, cfg.seeds[0], out).model
    rows = []
    for seed in cfg.seeds:
        runs = [str(budget.timed(pretrain_encoder, cfg, spec, data, seed, out / "runs" / f"seed{seed}" / arm))
                for arm, spec in cfg.arms.items() if budget.allows(f"pretrain {arm} seed {seed}")]
        inits = (["scratch"] if cfg.transfer.scratch else []) + runs
        for task in cfg.transfer.tasks:
            if not budget.allows(f"finetune {task} seed {seed}"):
                continue
            source = task_cohort(cfg, task, out, data)
            metrics = budget.timed(finetune_task, cfg, task, source, inits, model, seed,
                                   out / "finetune" / task / f"seed{seed}")
            for r in metrics["results"]:
                rows.append({"task": task, "init": r["init"], "seed": seed, "n_labelled": r["n_labelled"],
                             "n_train": r["n_train"], **{k: r[k]["mean"] for k in KEYS if k in r}})
    if not rows:
        raise StudyBudgetError(f"the time budget ran out before any fine-tuning ({', '.join(budget.skipped)} "
                               "not run); give more time: finished pretraining runs are reused")
    frame = pd.DataFrame(rows)
    check_finite(frame, KEYS, "transfer study")
    frame["n_labelled"] = frame.n_labelled.fillna(-1).astype(int)  # -1 = every training participant
    headline = frame[frame.n_labelled == frame.n_labelled.max()]
    stats = aggregate(headline, ["task", "init"], KEYS)
    table = pm_table(stats, ["task", "init"], KEYS, scale={k: 100.0 for k in KEYS}, digits=1)
    figs = {"auc": figures.grouped_bars(stats, "task", "init", KEYS, out / "figures" / "transfer_auc.png",
                                        "fine-tuning AUC (mean ± std over seeds)")}
    if frame.n_labelled.nunique() > 1:
        curve = aggregate(frame, ["task", "init", "n_labelled"], KEYS)
        figs["label_fraction"] = figures.curves(curve, "task", "init", "n_labelled", "auc_external",
                                                out / "figures" / "transfer_label_fraction.png",
                                                "external AUC vs labelled training participants")
    extra = [f"AUC in %; headline at n_labelled = {int(headline.n_labelled.iloc[0])} "
             "(-1 = every training participant); label-fraction curve in runs.csv."]
    return {"runs": frame, "stats": stats, "table": table, "figures": figs, "extra": extra,
            "hypotheses": hypotheses(stats), "published": PUBLISHED,
            "data_check": cohort_check(data, cfg.cohort.modality)}
