"""Raw-voxel and ComBat baselines of the synthetic presets (issue 17, item 5), with the challenge's probes.

For each preset and seed: a healthy cohort (the preset's sites: ``hard`` 12 training + 4 external,
``standard`` 6 + 2), vbm, written by ``make_synthetic_cohort``; features are the volumes after the
dataset's per-image z-score, average-pooled to at most 4096 voxels (``medssl.eval.baselines.RawVoxels``,
what ``medssl evaluate --baselines`` uses); the RAMP probes (``medssl.eval.protocol.score_fold``: ridge
age, saga logistic site) on the cohort's splits, raw and after ComBat fitted on the train rows
(``medssl.eval.baselines.harmonise``). References that need no image: the train-mean and site-mean age
predictors. The cohort's confounding: the share of age variance between sites, the train and external
age ranges.

    python benchmarks/hard_baselines.py --out benchmarks/results/hard_baselines.json     # ~10 min, 2 cores
    python benchmarks/hard_baselines.py --out benchmarks/results/hard_baselines.json --table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data import CohortDataset, make_synthetic_cohort, open_cohort
from medssl.eval.baselines import RawVoxels, harmonise
from medssl.eval.cv import make_folds
from medssl.eval.features import extract_features
from medssl.eval.protocol import score_fold

KEYS = ("mae_internal", "mae_external", "bacc_site", "site_chance", "challenge_score")


def evaluate(root: Path, shape: tuple[int, int, int]) -> dict[str, float]:
    cohort = open_cohort(root, "vbm")
    t = cohort.table
    X, meta = extract_features(RawVoxels(shape, 4096), CohortDataset(cohort), "cpu", 32, 0, False)
    fold = make_folds(t, "fixed")[0]
    raw, _ = score_fold(X, meta, fold, n_jobs=1)
    combat, _ = score_fold(harmonise(X, meta, fold)[0], meta, fold, n_jobs=1)
    age = t["age"].to_numpy()
    tr, it, et = ((t["split"] == s).to_numpy() for s in ("train", "internal_test", "external_test"))
    site_mean = t.loc[it, "site"].map(t[tr].groupby("site")["age"].mean())
    return {
        **{f"raw_{k}": raw[k] for k in KEYS}, **{f"combat_{k}": combat[k] for k in KEYS if k != "site_chance"},
        "train_mean_mae_internal": float(np.abs(age[it] - age[tr].mean()).mean()),
        "train_mean_mae_external": float(np.abs(age[et] - age[tr].mean()).mean()),
        "site_mean_mae_internal": float(np.abs(age[it] - site_mean).mean()),
        "between_site_age_share": float(t.groupby("site")["age"].transform("mean").var() / t["age"].var()),
        "train_age_range": [float(age[tr].min()), float(age[tr].max())],
        "external_age_range": [float(age[et].min()), float(age[et].max())],
    }  # fmt: skip


COLUMNS = {
    "raw_mae_internal": "raw MAE int", "raw_mae_external": "raw MAE ext", "raw_bacc_site": "raw site BAcc",
    "combat_mae_internal": "ComBat MAE int", "combat_mae_external": "ComBat MAE ext",
    "combat_bacc_site": "ComBat site BAcc", "site_chance": "chance", "train_mean_mae_internal": "train-mean MAE int",
    "train_mean_mae_external": "train-mean MAE ext", "site_mean_mae_internal": "site-mean MAE int",
    "between_site_age_share": "age variance between sites",
}  # fmt: skip


def markdown_table(payload: dict) -> str:
    """Mean ± sd over seeds, one row per preset."""
    frame = pd.DataFrame(payload["results"]).rename(columns={"raw_site_chance": "site_chance"})
    lines = ["| preset | sites | " + " | ".join(COLUMNS.values()) + " |", "|---" * (2 + len(COLUMNS)) + "|"]
    for (preset, sites), group in frame.groupby(["preset", "sites"], sort=False):
        cells = [f"{group[c].mean():.2f} ± {group[c].std():.2f}" if len(group) > 1 else f"{group[c].mean():.2f}"
                 for c in COLUMNS]  # fmt: skip
        lines.append(f"| {preset} | {sites} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hard_baselines.json"))
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    parser.add_argument("--presets", nargs="+", default=["hard", "standard"])
    parser.add_argument("--n-subjects", type=int, default=400)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 40, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return 0
    shape = tuple(args.shape)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for seed in args.seeds:
                start = time.time()
                root = make_synthetic_cohort(Path(tmp) / f"{preset}-{seed}", n_subjects=args.n_subjects, shape=shape,
                                             seed=seed, preset=preset, modalities=["vbm"])  # fmt: skip
                sites = json.loads((root / "synthetic.json").read_text())
                row = {"preset": preset, "seed": seed, "sites": f"{sites['n_sites']} + {sites['n_external_sites']}",
                       "generate_s": round(time.time() - start, 1), **evaluate(root, shape)}  # fmt: skip
                row["seconds"] = round(time.time() - start, 1)
                results.append(row)
                print(json.dumps(row), flush=True)
    command = ["benchmarks/hard_baselines.py", *(argv if argv is not None else sys.argv[1:])]
    payload = {"command": "python " + " ".join(command),
               "n_subjects": args.n_subjects, "shape": list(shape), "modality": "vbm", "results": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
