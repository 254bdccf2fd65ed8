"""``finetune(cfg)``: diagnosis-vs-control classifiers from pretrained encoders (or from scratch).

For each initialisation x labelled-set size x fold x repeat (x ensemble member): carve a validation
split from the training participants, train (``linear``: logistic head on frozen features; ``partial`` /
``full``: the ``classifier`` method through the shared engine, early stopping on validation AUC), then
score the internal test (training sites, held-out participants) and the external test (unseen sites).
Writes ``metrics.json`` (mean, std and 95 % CI over repeats), ``report.md``, ``predictions.csv``,
``roc.png``, ``label_fraction.png`` (when ``train.n_labelled`` is given) and the resolved ``config.yaml``.

Resuming: each finished (init, size, fold, repeat) unit leaves ``models/<init>/n<size>/<fold>/seed<k>/
result.{json,npz}``. Running the same config on the same folder again skips the finished units,
restarts an interrupted one from scratch, and writes the same outputs as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl.config import FinetuneConfig, save_resolved
from medssl.utils.device import resolve_device
from medssl.eval.cv import EXTERNAL, INTERNAL, TRAIN, Fold
from medssl.models.encoder_io import load_encoder
from medssl.pipelines import finetune_splits as splits
from medssl.pipelines.finetune_fit import (
    LabelledRows,
    balanced_weights,
    fit_engine,
    fit_logistic,
    oversample,
    predict_proba,
)
from medssl.pipelines.finetune_init import (
    Init,
    build_classifier,
    guard_leakage,
    open_task_cohort,
    resolve_inits,
)
from medssl.pipelines.finetune_report import (
    disease_score,
    finetune_report,
    plot_label_fraction,
    plot_roc,
    score_predictions,
    summarize_runs,
)
from medssl.pipelines.common import prepare_run_dir
from medssl.utils.io import atomic_path, write_json, write_text
from medssl.utils.repro import environment_info, seed_everything


def _fit_predict(init: Init, cfg: FinetuneConfig, parts: dict[str, np.ndarray], labels: np.ndarray,
                 n_classes: int, seed: int, work: Path, device: torch.device) -> tuple[np.ndarray, dict]:
    """Train on ``parts[train]`` (early stopping on ``parts[validation]``); (N_test, K) probabilities
    for the rows ``concat(internal, external)`` (averaged over the ensemble) and a fit summary."""
    ft, test = cfg.finetune, np.concatenate([parts[INTERNAL], parts[EXTERNAL]])
    if ft.recipe == "linear":
        X, pos = init.features, init.feature_row
        model, info = fit_logistic(X[pos[parts[TRAIN]]], labels[parts[TRAIN]], X[pos[parts["validation"]]],
                                   labels[parts["validation"]], ft.linear_C, ft.balance != "none", seed)
        return model.predict_proba(X[pos[test]]), info
    train_rows = oversample(parts[TRAIN], labels, seed) if ft.balance == "oversample" else parts[TRAIN]
    weights = balanced_weights(labels[parts[TRAIN]], n_classes) if ft.balance == "loss" else None
    val = LabelledRows(init.dataset, parts["validation"], labels)
    probas, infos = [], []
    for member in range(ft.ensemble):
        member_seed = seed * 1000 + member
        seed_everything(member_seed)
        method = build_classifier(init, cfg, n_classes, weights)
        train_cfg = dataclasses.replace(cfg.train, seed=member_seed)
        infos.append(fit_engine(method, LabelledRows(init.dataset, train_rows, labels), val, train_cfg,
                                work / f"member{member}", device, cfg.train.patience,
                                cfg.data.num_workers))
        probas.append(predict_proba(method, LabelledRows(init.dataset, test, labels), device,
                                    cfg.train.batch_size, cfg.train.precision))
    return np.mean(probas, axis=0), {"members": infos}


def _run_once(init: Init, cfg: FinetuneConfig, table: pd.DataFrame, labels: np.ndarray,
              classes: list[str], fold: Fold, n: int | None, seed: int, work: Path,
              device: torch.device) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """One repeat: carve validation (and the labelled subset), fit, score both test sets.

    Returns the run record and ``{test_set: (rows, probabilities (N, K))}``.
    """
    fit, val = splits.carve_validation(table, fold.train, labels, cfg.finetune.val_fraction, seed)
    if n is not None:
        fit = splits.subsample(table, fit, labels, n, seed)
    parts = {TRAIN: fit, "validation": val, INTERNAL: fold.internal_test, EXTERNAL: fold.external_test}
    splits.check_disjoint(table, parts)
    proba, info = _fit_predict(init, cfg, parts, labels, len(classes), seed, work, device)
    run: dict[str, Any] = {"init": init.name, "n_labelled": n, "n_train": len(fit), "fold": fold.name,
                           "seed": seed, "label_counts": splits.label_counts(labels, classes, parts), **info}
    tests = {}
    cut = len(parts[INTERNAL])
    for part, p in ((INTERNAL, proba[:cut]), (EXTERNAL, proba[cut:])):
        if len(parts[part]):
            scores = score_predictions(labels[parts[part]], p)
            name = part.split("_")[0]
            run.update({f"auc_{name}": scores["auc"], f"bacc_{name}": scores["bacc"]})
            tests[part] = (parts[part], p)
    return run, tests


def unit_dir(run_dir: Path, init: str, n: int | None, fold: str, seed: int) -> Path:
    """Working folder of one (init, size, fold, repeat) unit, where its result is kept."""
    return run_dir / "models" / init / f"n{n or 'all'}" / fold / f"seed{seed}"


def _save_unit(work: Path, run: dict[str, Any], tests: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Keep a finished unit: arrays first, then ``result.json``, whose presence marks it finished."""
    with atomic_path(work / "result.npz") as tmp:
        np.savez(tmp, **{f"{part}/{key}": a for part, (rows, proba) in tests.items()
                         for key, a in (("rows", rows), ("proba", proba))})
    write_json(work / "result.json", run)


def _load_unit(work: Path) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A finished unit's run record and test predictions (``result.json`` + ``result.npz``)."""
    with np.load(work / "result.npz") as arrays:
        parts = {key.split("/")[0] for key in arrays.files}
        tests = {part: (arrays[f"{part}/rows"], arrays[f"{part}/proba"]) for part in sorted(parts)}
    return json.loads((work / "result.json").read_text()), tests


def finetune(cfg: FinetuneConfig, *, overwrite: bool = False, command: str | None = None) -> Path:
    """Run every (init, size, fold, repeat) of ``cfg``; returns the run folder holding ``metrics.json``
    (``command``, the command line that ran it, is quoted in ``report.md``)."""
    run_dir = Path(cfg.out)
    device = resolve_device(cfg.train.device)
    cohort = open_task_cohort(cfg.data)
    classes = splits.task_classes(cfg.task.positive, cfg.task.control, cfg.task.classes)
    table = cohort.table
    labels = splits.encode_labels(table, classes, str(cfg.data.source))
    inits = resolve_inits(cfg)
    for init in inits:
        if init.card is not None:
            load_encoder(init.source)  # a bad weights file fails here, not after OUT is written
    leakage = guard_leakage(inits, cohort, cfg)
    ft = cfg.finetune
    folds = splits.task_folds(table, labels, ft.splits, cfg.train.seed, ft.n_external_sites,
                              ft.internal_fraction, ft.n_folds)
    # everything that can fail before training has been checked: only now is OUT touched (as pretrain)
    resuming = prepare_run_dir(run_dir, cfg, None, overwrite, state="models")  # no --resume
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / "config.yaml", {**environment_info(), "leakage": leakage,
                                                  "resumed": resuming})
    sizes = cfg.train.n_labelled or [None]
    results, frames, curves = [], [], {}
    for init in inits:
        init.prepare(cfg, cohort, labels, device)
        for n in sizes:
            runs = []
            for fold in folds:
                for seed in range(cfg.train.seed, cfg.train.seed + ft.repeats):
                    work = unit_dir(run_dir, init.name, n, fold.name, seed)
                    if not (work / "result.json").exists():
                        shutil.rmtree(work, ignore_errors=True)  # an interrupted unit starts again
                        _save_unit(work, *_run_once(init, cfg, table, labels, classes, fold, n, seed,
                                                    work, device))
                    run, tests = _load_unit(work)  # the same record either way: resumed == uninterrupted
                    runs.append(run)
                    for part, (rows, proba) in tests.items():
                        frames.append(_prediction_frame(table, rows, proba, labels[rows], classes, part, run))
                        if n == sizes[-1]:
                            curves.setdefault(init.name, {}).setdefault(part, []).append(
                                (f"{fold.name} seed {seed}", labels[rows], disease_score(proba)))
            results.append({"init": init.name, "init_source": init.source, "n_labelled": n,
                            "n_train": int(np.mean([r["n_train"] for r in runs])),
                            **summarize_runs(runs), "runs": runs})
    _write_outputs(run_dir, cfg, classes, inits, leakage, results, frames, curves, command)
    return run_dir


def _prediction_frame(table: pd.DataFrame, rows: np.ndarray, proba: np.ndarray, y: np.ndarray,
                      classes: list[str], part: str, run: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"init": run["init"], "n_labelled": run["n_labelled"], "fold": run["fold"],
                          "seed": run["seed"], "part": part,
                          "participant_id": table.participant_id.iloc[rows].to_numpy(),
                          "site": table.site.iloc[rows].to_numpy(), "label": np.asarray(classes)[y]})
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, k]
    return frame


def _write_outputs(run_dir: Path, cfg: FinetuneConfig, classes: list[str], inits: list[Init],
                   leakage: list[dict[str, Any]], results: list[dict[str, Any]],
                   predictions: list[pd.DataFrame], curves: dict[str, Any], command: str | None) -> None:
    headline = next(r for r in results if r["n_labelled"] == (cfg.train.n_labelled or [None])[-1])
    summary_keys = [k for k in ("auc_internal", "auc_external", "bacc_internal", "bacc_external")
                    if k in headline]
    metrics = {
        **{k: headline[k] for k in summary_keys},
        "init": headline["init_source"], "inits": [i.source for i in inits],
        "recipe": cfg.finetune.recipe, "classes": classes, "positive": classes[1:],
        "control": classes[0], "label_counts": headline["runs"][0]["label_counts"],
        "repeats": cfg.finetune.repeats,
        "ensemble": cfg.finetune.ensemble, "leakage": {"mode": cfg.finetune.leakage, "checks": leakage},
        "trainable_prefixes": {i.name: i.trainable_prefixes for i in inits},
        "results": results, "figures": {"roc": "roc.png"},
    }
    if cfg.train.n_labelled:
        plot_label_fraction(results, run_dir / "label_fraction.png")
        metrics["figures"]["label_fraction"] = "label_fraction.png"
    plot_roc(curves, run_dir / "roc.png")
    with atomic_path(run_dir / "predictions.csv") as tmp:
        pd.concat(predictions, ignore_index=True).to_csv(tmp, index=False)
    write_text(run_dir / "report.md", finetune_report(metrics, command))
    write_json(run_dir / "metrics.json", metrics)


