"""``medssl finetune``: diagnosis-vs-control classifiers from pretrained encoders or from scratch."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any


def register(sub: Any) -> None:
    """Add this group's subcommands to the ``medssl`` parser."""
    p = sub.add_parser(
        "finetune", help="fine-tune diagnosis classifiers (internal/external AUC over repeats)",
        description="Train diagnosis-vs-control classifiers as CONFIG says; key=value overrides win, e.g. "
        "init=runs/yaware/encoder.pt (or init=[scratch,runs/a,runs/b]; a folder written by medssl export-hub, or "
        "hf://ORG/NAME[@REVISION]) data.source=manifest.csv "
        "finetune.recipe=linear|partial|full train.n_labelled=[100,300,500] finetune.leakage=warn "
        "out=runs/ft. Writes OUT/metrics.json, report.md, predictions.csv, roc.png (and label_fraction.png).")
    p.add_argument("config", help="YAML task file, e.g. configs/finetune/scz.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    # deferred: medssl.config (yaml, ~30 ms) and medssl.pipelines (torch, MONAI: seconds) would slow every
    # medssl start-up, since the CLI imports every command module
    from medssl.config import FinetuneConfig, load_config
    from medssl.pipelines.finetune import finetune

    cfg = load_config(args.config, args.overrides, FinetuneConfig)
    command = " ".join(shlex.quote(p) for p in ["medssl", "finetune", args.config, *args.overrides,
                                                  *(["--overwrite"] if args.overwrite else [])])
    run_dir = finetune(cfg, overwrite=args.overwrite, command=command)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("auc_internal", "auc_external"):
        if key in metrics:
            m = metrics[key]
            ci = f" [95% CI {m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" if m["ci95"] else ""
            print(f"{key}: {m['mean']:.3f} +/- {m['std']:.3f}{ci} over {m['n']} run(s)")
    print(f"results written to {run_dir / 'metrics.json'}; report: {run_dir / 'report.md'}")
    return 0
