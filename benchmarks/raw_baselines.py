"""Raw-voxel baselines on the synthetic cohort: how hard are age, site and diagnosis from the voxels?

Features are the stored voxels after the dataset's per-image z-score (``CohortDataset(normalize="zscore")``,
as every medssl pipeline feeds them). Healthy cohort (6 training + 2 external sites, the demo's design),
per modality: the challenge's age probe (``medssl.eval.probes.openbhb_age``: ridge, alpha in 1e-2..1e2 by
5-fold CV) -> MAE on internal_test and external_test; logistic regression of site (standardised voxels,
C by CV on balanced accuracy) -> BAcc on internal_test vs chance 1/K; reference MAEs that need no image
(predict the train mean; predict the train mean of the scan's site); the correlation of total GM (sum of
the stored vbm map) with age. Clinical cohorts (``synthetic:scz|bd|asd`` sizes, vbm): logistic case vs
control, C by CV on ROC AUC -> AUC on internal_test and external_test.
The logistic models are fitted on all principal components of the (fold's) standardised training voxels:
with an L2 penalty the solution lies in the span of the training samples, so this is the same model, faster.

Usage (writes the JSON; ``--table`` prints the markdown tables that docs/data.md quotes):
    python benchmarks/raw_baselines.py --out benchmarks/results/raw_baselines.json
    python benchmarks/raw_baselines.py --out benchmarks/results/raw_baselines.json --table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.data import CohortDataset, make_synthetic_cohort, open_cohort
from medssl.eval.probes import openbhb_age

SHAPE = (32, 40, 32)


def features(cohort) -> np.ndarray:  # noqa: ANN001
    """``(N, V)`` voxels after the per-image z-score."""
    data = CohortDataset(cohort, normalize="zscore")
    return np.stack([data[i]["image"].ravel() for i in range(len(data))])


def logistic(y: np.ndarray, scoring: str) -> GridSearchCV:
    """Standardised voxels -> all principal components -> L2 logistic regression, C by stratified CV."""
    folds = int(min(5, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    return GridSearchCV(
        make_pipeline(StandardScaler(), PCA(), LogisticRegression(max_iter=5000)),
        {"logisticregression__C": np.logspace(-5, 0, 6)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=0), scoring=scoring,
    )  # fmt: skip


def evaluate_healthy(root: Path, modality: str) -> dict[str, float | None]:
    cohort = open_cohort(root, modality)
    t = cohort.table
    x = features(cohort)
    tr, it, et = ((t["split"] == s).to_numpy() for s in ("train", "internal_test", "external_test"))
    age = t["age"].to_numpy()
    ridge = openbhb_age().fit(x[tr], age[tr])
    site = t["site_code"].to_numpy()
    logit = logistic(site[tr], "balanced_accuracy").fit(x[tr], site[tr])
    site_mean = t[tr].groupby("site")["age"].mean()
    out = {
        "ridge_age_mae_internal": mean_absolute_error(age[it], ridge.predict(x[it])),
        "ridge_age_mae_external": mean_absolute_error(age[et], ridge.predict(x[et])),
        "mean_age_mae_internal": mean_absolute_error(age[it], np.full(it.sum(), age[tr].mean())),
        "mean_age_mae_external": mean_absolute_error(age[et], np.full(et.sum(), age[tr].mean())),
        "site_mean_age_mae_internal": mean_absolute_error(age[it], t.loc[it, "site"].map(site_mean)),
        "logistic_site_bacc_internal": balanced_accuracy_score(site[it], logit.predict(x[it])),
        "site_chance": 1.0 / cohort.n_train_sites,
        "train_age_min": age[tr].min(), "train_age_max": age[tr].max(),
        "external_age_min": age[et].min(), "external_age_max": age[et].max(),
    }  # fmt: skip
    if modality == "vbm":
        stored = np.stack([cohort.read(i).ravel() for i in range(len(cohort))])
        out["corr_age_total_gm"] = float(np.corrcoef(age, stored.sum(1))[0, 1])
    return {k: round(float(v), 3) for k, v in out.items()}


def evaluate_clinical(root: Path) -> dict[str, float]:
    cohort = open_cohort(root, "vbm")
    t = cohort.table
    x = features(cohort)
    tr, it, et = ((t["split"] == s).to_numpy() for s in ("train", "internal_test", "external_test"))
    y = (t["diagnosis"] != "control").to_numpy().astype(int)
    score = logistic(y[tr], "roc_auc").fit(x[tr], y[tr]).decision_function(x)
    return {"auc_internal": round(roc_auc_score(y[it], score[it]), 3),
            "auc_external": round(roc_auc_score(y[et], score[et]), 3)}  # fmt: skip


COLUMNS = {
    "ridge_age_mae_internal": "ridge age MAE, internal",
    "ridge_age_mae_external": "ridge age MAE, external",
    "mean_age_mae_internal": "train-mean MAE, internal",
    "mean_age_mae_external": "train-mean MAE, external",
    "site_mean_age_mae_internal": "site-mean MAE, internal",
    "logistic_site_bacc_internal": "logistic site BAcc, internal",
    "site_chance": "chance BAcc",
}
CLINICAL_COLUMNS = {"auc_internal": "logistic AUC, internal", "auc_external": "logistic AUC, external"}


def _cells(group, columns: dict[str, str]) -> list[str]:  # noqa: ANN001
    return [f"{group[c].mean():.2f} ± {group[c].std():.2f}" if len(group) > 1 else f"{group[c].mean():.2f}"
            for c in columns]  # fmt: skip


def markdown_table(payload: dict) -> str:
    """Mean ± std over seeds: healthy rows per (size, modality), then clinical rows per cohort."""
    import pandas as pd

    frame = pd.DataFrame(payload["results"])
    lines = ["| n subjects | modality | " + " | ".join(COLUMNS.values()) + " |", "|---" * (2 + len(COLUMNS)) + "|"]
    for (n, modality), group in frame.groupby(["n_subjects", "modality"], sort=False):
        lines.append(f"| {n} | {modality} | " + " | ".join(_cells(group, COLUMNS)) + " |")
    gm = frame.dropna(subset=["corr_age_total_gm"]).groupby("n_subjects")["corr_age_total_gm"]
    notes = ", ".join(f"n={n}: {g.mean():.2f} ± {g.std():.2f}" for n, g in gm)
    lines += ["", f"Correlation of age with total GM (sum of the vbm map): {notes}.", ""]
    clinical = pd.DataFrame(payload.get("clinical", []))
    if len(clinical):
        lines += ["| cohort | n subjects | " + " | ".join(CLINICAL_COLUMNS.values()) + " |", "|---" * 4 + "|"]
        for (name, n), group in clinical.groupby(["cohort", "n_subjects"], sort=False):
            lines.append(f"| {name} | {n} | " + " | ".join(_cells(group, CLINICAL_COLUMNS)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/raw_baselines.json")
    parser.add_argument("--table", action="store_true", help="print the markdown tables of --out and exit")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160], help="healthy cohort sizes")
    parser.add_argument("--clinical-size", type=int, default=96, help="clinical cohort size (0: skip)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    results, clinical = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for seed in args.seeds:
                start = time.time()
                root = make_synthetic_cohort(Path(tmp) / f"healthy-{n}-{seed}", "healthy", n, 6, 2, SHAPE, seed)
                row = {"n_subjects": n, "seed": seed, "generate_s": round(time.time() - start, 1)}
                for modality in ("vbm", "quasiraw"):
                    results.append({**row, "modality": modality, **evaluate_healthy(root, modality)})
                    print(json.dumps(results[-1]), flush=True)
        for name in ("scz", "bd", "asd") if args.clinical_size else ():
            for seed in args.seeds:
                root = make_synthetic_cohort(Path(tmp) / f"{name}-{seed}", name, args.clinical_size, 6, 2, SHAPE, seed)
                clinical.append({"cohort": name, "n_subjects": args.clinical_size, "seed": seed,
                                 **evaluate_clinical(root)})  # fmt: skip
                print(json.dumps(clinical[-1]), flush=True)
    payload = {"command": "python " + " ".join(["benchmarks/raw_baselines.py", *(argv or sys.argv[1:])]),
               "shape": list(SHAPE), "features": "per-image z-score", "results": results,
               "clinical": clinical}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
