"""``medssl study``: run one of the seed lecture's studies (all arms x seeds) from a study YAML."""

from __future__ import annotations

import argparse
import shlex
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("study", help="run a study (arms x seeds -> results table, figures, verdicts)",
                       description="Pretrain and evaluate every arm and seed of STUDY_CONFIG (e.g. "
                       "experiments/regression_cpu.yaml) and write table.md/.csv, summary.md and figures. "
                       "key=value overrides win (e.g. seeds=[0] pretrain.train.epochs=2). Re-running the "
                       "same study on its folder resumes it; finished runs are not redone.")
    p.add_argument("config", help="study YAML, e.g. experiments/regression_cpu.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--out", default=None, help="study folder (default: the config's out)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing study folder first")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-clock budget: runs that would not fit are skipped and listed in summary.md")
    p.set_defaults(func=run_study_command)


def run_study_command(args: argparse.Namespace) -> int:
    # deferred: medssl.pipelines pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.pipelines.studies import load_study, run_study

    cfg = load_study(args.config, args.overrides)
    budget = None if args.budget_minutes is None else 60.0 * args.budget_minutes
    result = run_study(cfg, args.out, overwrite=args.overwrite, command=_command(args), budget_s=budget)
    print(result.markdown)
    print(f"study written to {result.out}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (recorded in summary.md)."""
    parts = ["medssl", "study", args.config, *args.overrides]
    parts += ["--out", args.out] if args.out else []
    parts += ["--overwrite"] if args.overwrite else []
    parts += ["--budget-minutes", str(args.budget_minutes)] if args.budget_minutes is not None else []
    return " ".join(shlex.quote(p) for p in parts)
