"""``medssl pretrain`` and ``medssl demo``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="pretrain an encoder from a YAML config",
                       description="Train an encoder as CONFIG says; key=value overrides win "
                       "(e.g. train.epochs=5 loss.sigma=2 out=runs/x). Re-running the same command "
                       "on an existing run folder resumes it from checkpoints/last.pt.")
    p.add_argument("config", help="YAML experiment file, e.g. configs/pretrain/yaware_densenet121.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--resume", action="store_true", help="resume even if the config changed")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder first")
    p.set_defaults(func=run_pretrain)

    d = sub.add_parser("demo", help="synthetic cohort -> SimCLR and y-aware pretraining -> evaluation",
                       description="The whole path on the embedded synthetic cohort, sized for a laptop.")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--epochs", type=int, default=None, help="pretraining epochs per method")
    d.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")
    d.set_defaults(func=run_demo)


def run_pretrain(args: argparse.Namespace) -> int:
    # deferred: medssl.config (yaml, ~30 ms) and medssl.pipelines (torch, MONAI: seconds) would slow every
    # medssl start-up, since the CLI imports every command module
    from medssl.config import PretrainConfig, load_config
    from medssl.pipelines.pretrain import pretrain

    cfg = load_config(args.config, args.overrides, PretrainConfig)
    run_dir = pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    print(f"encoder written to {run_dir / 'encoder.pt'}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    # deferred: medssl.pipelines pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.pipelines.demo import demo

    demo(args.out, epochs=args.epochs, overwrite=args.overwrite)
    return 0
