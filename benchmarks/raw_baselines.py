"""Raw-voxel baselines on the synthetic cohort: how hard are age and site from the stored voxels?

For each modality: ridge regression of age (alpha by 5-fold CV on train) -> MAE on internal_test and
external_test; logistic regression of site (C by 5-fold CV, balanced accuracy) -> BAcc on internal_test
vs chance 1/K; plus reference MAEs (predict the train mean; predict the train mean of the scan's site)
and the correlation of total GM (sum of the vbm map) with age. Features are the stored voxels,
standardised per voxel on train (no per-image z-score), as in the kit's linear probes but scaled.
The logistic model is fitted on all principal components of the (fold's) training voxels: with an L2
penalty the solution lies in the span of the training samples, so this is the same model, much faster.

Usage (writes the JSON; ``--table`` prints the markdown table that docs/data.md quotes):
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
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from medssl.data import ensure_synthetic, open_cohort


def features(cohort) -> np.ndarray:  # noqa: ANN001
    return np.stack([cohort.read(i).ravel() for i in range(len(cohort))])


def evaluate(root: Path, modality: str) -> dict[str, float]:
    cohort = open_cohort(root, modality)
    t = cohort.table
    x = features(cohort)
    tr, it, et = (t["split"] == s for s in ("train", "internal_test", "external_test"))
    age = t["age"].to_numpy()
    ridge = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": np.logspace(0, 6, 13)},
                         cv=5, scoring="neg_mean_absolute_error").fit(x[tr], age[tr])  # fmt: skip
    site = t["site_code"].to_numpy()
    n_folds = int(min(5, np.bincount(site[tr]).min()))
    logit = GridSearchCV(
        make_pipeline(StandardScaler(), PCA(), LogisticRegression(max_iter=5000)),
        {"logisticregression__C": np.logspace(-5, 0, 6)},
        cv=StratifiedKFold(n_folds, shuffle=True, random_state=0), scoring="balanced_accuracy",
    ).fit(x[tr], site[tr])
    site_mean = t[tr].groupby("site")["age"].mean()
    out = {
        "ridge_age_mae_internal": mean_absolute_error(age[it], ridge.predict(x[it])),
        "ridge_age_mae_external": mean_absolute_error(age[et], ridge.predict(x[et])) if et.any() else None,
        "mean_age_mae_internal": mean_absolute_error(age[it], np.full(it.sum(), age[tr].mean())),
        "mean_age_mae_external": mean_absolute_error(age[et], np.full(et.sum(), age[tr].mean())) if et.any() else None,
        "site_mean_age_mae_internal": mean_absolute_error(age[it], t.loc[it, "site"].map(site_mean)),
        "logistic_site_bacc_internal": balanced_accuracy_score(site[it], logit.predict(x[it])),
        "site_chance": 1.0 / cohort.n_train_sites,
    }
    if modality == "vbm":
        out["corr_age_total_gm"] = float(np.corrcoef(age, x.sum(1))[0, 1])
    return {k: (round(float(v), 3) if v is not None else None) for k, v in out.items()}


COLUMNS = {
    "ridge_age_mae_internal": "ridge age MAE, internal",
    "ridge_age_mae_external": "ridge age MAE, external",
    "mean_age_mae_internal": "train-mean MAE, internal",
    "mean_age_mae_external": "train-mean MAE, external",
    "site_mean_age_mae_internal": "site-mean MAE, internal",
    "logistic_site_bacc_internal": "logistic site BAcc, internal",
    "site_chance": "chance BAcc",
}


def markdown_table(payload: dict) -> str:
    """Mean ± std over seeds of each figure, one row per (cohort size, modality)."""
    import pandas as pd

    frame = pd.DataFrame(payload["results"])
    lines = ["| n subjects | modality | " + " | ".join(COLUMNS.values()) + " |", "|---" * (2 + len(COLUMNS)) + "|"]
    for (n, modality), group in frame.groupby(["n_subjects", "modality"], sort=False):
        cells = [f"{group[c].mean():.2f} ± {group[c].std():.2f}" if len(group) > 1 else f"{group[c].mean():.2f}"
                 for c in COLUMNS]  # fmt: skip
        lines.append(f"| {n} | {modality} | " + " | ".join(cells) + " |")
    gm = frame.dropna(subset=["corr_age_total_gm"]).groupby("n_subjects")["corr_age_total_gm"]
    notes = ", ".join(f"n={n}: {g.mean():.2f} ± {g.std():.2f}" for n, g in gm)
    return "\n".join(lines) + f"\n\nCorrelation of age with total GM (sum of the vbm map): {notes}.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/raw_baselines.json")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 480], help="cohort sizes (n_subjects)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as cache:
        for n in args.sizes:
            for seed in args.seeds:
                start = time.time()
                root = ensure_synthetic(cache, n_subjects=n, shape=(32, 40, 32), seed=seed)
                generated = time.time() - start
                for modality in ("vbm", "quasiraw"):
                    row = {"n_subjects": n, "seed": seed, "modality": modality, "generate_s": round(generated, 1)}
                    results.append({**row, **evaluate(root, modality)})
                    print(json.dumps(results[-1]), flush=True)
    payload = {"command": "python " + " ".join(["benchmarks/raw_baselines.py", *(argv or sys.argv[1:])]),
               "shape": [32, 40, 32], "results": results}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
