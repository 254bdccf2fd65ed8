"""``medssl evaluate`` and ``medssl compare``: frozen-encoder evaluation with the OpenBHB challenge probes."""

from __future__ import annotations

import argparse
from typing import Any

from medssl.errors import ConfigError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic",
                   help="cohort: OpenBHB root (HF, DataPort, kit), manifest CSV, or 'synthetic' (default)")
    p.add_argument("--data-root", default=None, help="base folder of relative manifest paths")
    p.add_argument("--batch-size", type=int, default=8, help="scans per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--baselines", action="store_true",
                   help="also score raw downsampled voxels, ComBat-harmonised voxels and ComBat-harmonised features")
    p.add_argument("--cv", default="fixed", choices=["fixed", "site_kfold", "leave_sites_out"],
                   help="fixed: the cohort's train/internal_test/external_test splits (default); site_kfold: k "
                   "folds stratified by site over the sites seen in train, the unseen sites as external test; "
                   "leave_sites_out: each fold holds out a group of sites as external test (see --folds)")
    p.add_argument("--folds", type=int, default=None,
                   help="site_kfold: number of folds (default 5); leave_sites_out: k-fold leave-site-out, all "
                   "the cohort's sites (any split) shuffled with seed 0 into k disjoint groups whose sizes differ "
                   "by at most one, each held out once; default: leave-one-site-out (k = number of sites)")
    p.add_argument("--probes", nargs="*", default=[], choices=["scaled", "knn", "mlp"],
                   help="extra probes, reported separately and labelled as NOT the challenge protocol")
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs of the probes' grid search")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")


def register(sub: Any) -> None:
    """Add ``evaluate`` and ``compare`` to the ``medssl`` parser."""
    e = sub.add_parser(
        "evaluate", help="evaluate a frozen encoder: age MAE, site BAcc, challenge score, site-effect report",
        description="Embed every scan with the frozen encoder, fit the OpenBHB challenge probes on the train "
        "split and write metrics.json, report.md and figures (default folder RUN/eval).")
    e.add_argument("encoder", help="run folder (with encoder.pt + encoder.json), an encoder.pt file, a folder "
                   "written by medssl export-hub, or hf://ORG/NAME[@REVISION] (pip install medssl[hub])")
    e.add_argument("--out", default=None, help="output folder (default RUN/eval, <stem>_eval beside the .pt, "
                   "./ORG--NAME_eval for hf://ORG/NAME)")
    _common(e)
    e.set_defaults(func=run_evaluate)

    c = sub.add_parser("compare", help="evaluate several encoders on one cohort: one table, one figure",
                       description="Puts runs side by side (comparison.md/.csv and comparison.png); an existing "
                       "RUN/eval/metrics.json made on the same --data and --cv is reused.")
    c.add_argument("encoders", nargs="+", help="run folders, encoder.pt files, export-hub folders or hf:// references")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--no-reuse", action="store_true", help="re-evaluate even when RUN/eval/metrics.json exists")
    _common(c)
    c.set_defaults(func=run_compare)


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``evaluate``/``compare``; ``--folds`` is ``n_splits`` (site_kfold) or
    ``n_groups`` (leave_sites_out: k groups covering every site)."""
    cv_kwargs: dict[str, Any] = {}
    if args.folds is not None:
        if args.cv == "fixed":
            raise ConfigError("--folds needs --cv site_kfold or --cv leave_sites_out")
        cv_kwargs["n_splits" if args.cv == "site_kfold" else "n_groups"] = args.folds
    return dict(batch_size=args.batch_size, device=args.device, baselines=args.baselines, cv=args.cv,
                cv_kwargs=cv_kwargs, alt_probes=tuple(args.probes), data_root=args.data_root, n_jobs=args.jobs,
                num_workers=args.num_workers)


def run_evaluate(args: argparse.Namespace) -> int:
    # deferred: medssl.pipelines pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.pipelines.evaluate import default_out, evaluate

    out = args.out or default_out(args.encoder)
    m = evaluate(args.encoder, args.data, out, overwrite=args.overwrite, **_kwargs(args))
    ext = "n/a" if m["mae_external"] is None else f"{m['mae_external']:.3f}"
    score = "n/a" if m["challenge_score"] is None else f"{m['challenge_score']:.3f}"
    print(f"MAE internal {m['mae_internal']:.3f} | MAE external {ext} | site BAcc {m['bacc_site']:.3f} "
          f"(chance {m['site_chance']:.3f}) | challenge score {score}")
    print(f"report: {out}/report.md")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    # deferred: medssl.pipelines pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.pipelines.evaluate import compare
    from medssl.eval.report import markdown_table

    table = compare(args.encoders, args.data, args.out, overwrite=args.overwrite, reuse=not args.no_reuse,
                    **_kwargs(args))
    print(markdown_table(table))
    print(f"table and figure: {args.out}/comparison.md, comparison.png")
    return 0
