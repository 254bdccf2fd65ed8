"""``medssl`` subcommands of the data group: synth, manifest, validate, check-leakage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medssl.errors import DataError


def register(sub: Any) -> None:
    """Add this group's subcommands to the ``medssl`` parser."""
    p = sub.add_parser("synth", help="generate a synthetic cohort (MNI152 anatomy, age/site/diagnosis effects)")
    p.add_argument("out", help="output folder (refused if it exists, unless --overwrite)")
    p.add_argument("--cohort", default="healthy", choices=["healthy", "scz", "bd", "asd"])
    p.add_argument("--n-subjects", type=int, default=96)
    p.add_argument("--n-sites", type=int, default=None, help="training sites (default: the preset's, 6 or 12)")
    p.add_argument("--n-external-sites", type=int, default=None,
                   help="extra sites only in external_test (default: the preset's, 2 or 4)")  # fmt: skip
    p.add_argument("--shape", type=int, nargs=3, default=[32, 40, 32], metavar=("D", "H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=["standard", "hard"], default="standard",
                   help="hard: 12 + 4 sites, narrow site age bands, strong scanners (docs/data.md)")  # fmt: skip
    p.add_argument("--layout", choices=["hf", "kit", "nifti"], default=None,
                   help="default: hf for healthy, nifti (+ manifest) for clinical cohorts")  # fmt: skip
    p.add_argument("--modalities", nargs="+", choices=["vbm", "quasiraw"], default=["vbm", "quasiraw"],
                   help="images to write (kit needs both)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="where volumes are simulated: cpu, cuda or auto")
    p.add_argument("--batch-size", type=int, default=None, help="subjects at once (output does not depend on it)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_synth)

    m = sub.add_parser("manifest", help="write a manifest CSV for an OpenBHB, UK Biobank or BIDS folder")
    kinds = m.add_subparsers(dest="kind", required=True, metavar="KIND")
    o = kinds.add_parser("openbhb", help="OpenBHB HuggingFace or DataPort root")
    o.add_argument("--modality", default="vbm", choices=["vbm", "quasiraw"])
    u = kinds.add_parser("ukbiobank", help="UK Biobank imaging folders <eid>_20252_2_0/")
    u.add_argument("--fields", required=True, help="CSV with eid, 21003 (age), 31 (sex), 54 (centre)")
    u.add_argument("--image", default="t1", choices=["t1", "gm"], help="T1_brain_to_MNI or FAST GM PVE")
    b = kinds.add_parser("bids", help="BIDS-like tree + participants.tsv")
    b.add_argument("--participants", required=True, help="participants.tsv")
    b.add_argument("--pattern", default="sub-*/**/anat/*_T1w.nii*", help="image glob under ROOT")
    for q in (o, u, b):
        q.add_argument("root", help="data folder")
        q.add_argument("--out", required=True, help="manifest CSV to write")
        q.add_argument("--overwrite", action="store_true")
        q.set_defaults(func=run_manifest)

    v = sub.add_parser("validate", help="check a cohort (reads every image) and print a summary")
    v.add_argument("source", help="OpenBHB root (HF, DataPort, kit), manifest CSV or 'synthetic'")
    v.add_argument("--modality", default="vbm", choices=["vbm", "quasiraw"])
    v.add_argument("--data-root", default=None, help="base folder of relative manifest paths")
    v.add_argument("--headers-only", action="store_true", help="skip reading the voxels")
    v.add_argument("--allow-missing", action="store_true",
                   help="accept training scans without age or site (refused by default: training and the "
                   "challenge probes need both)")
    v.set_defaults(func=run_validate)

    c = sub.add_parser("check-leakage", help="refuse shared participants/studies between two cohorts")
    c.add_argument("a", help="first cohort (e.g. pretraining)")
    c.add_argument("b", help="second cohort (e.g. downstream)")
    c.add_argument("--on", nargs="+", default=["participant_id", "study"], help="columns to compare")
    c.add_argument("--modality", default="vbm", choices=["vbm", "quasiraw"])
    c.add_argument("--warn", action="store_true", help="warn instead of failing")
    c.set_defaults(func=run_check_leakage)


def run_synth(args: argparse.Namespace) -> int:
    # deferred: medssl.data pulls torch and pandas (seconds); the CLI imports every command module at start-up
    from medssl.data import make_synthetic_cohort

    out = make_synthetic_cohort(args.out, args.cohort, args.n_subjects, args.n_sites, args.n_external_sites,
                                tuple(args.shape), args.seed, args.layout, args.overwrite, preset=args.preset,
                                device=args.device, modalities=args.modalities, batch_size=args.batch_size)  # fmt: skip
    print(f"wrote a synthetic {args.cohort} cohort ({args.n_subjects} subjects) to {out}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    # deferred: medssl.data pulls torch and pandas (seconds); the CLI imports every command module at start-up
    from medssl.data import manifest_builders as mb
    from medssl.data.manifest import write_manifest

    root = Path(args.root).expanduser()
    if args.kind == "openbhb":
        table = mb.build_openbhb_manifest(root, args.modality)
    elif args.kind == "ukbiobank":
        table = mb.build_ukbiobank_manifest(root, args.fields, args.image)
    else:
        table = mb.build_bids_manifest(root, args.participants, args.pattern)
    out = Path(args.out).expanduser()
    here = out.resolve().parent
    base = here if root.resolve() == here or here in root.resolve().parents else root
    write_manifest(table, out, base, overwrite=args.overwrite)
    hint = "" if base == here else f"; paths are relative to {root}: open it with data_root={root}"
    print(f"wrote {len(table)} rows to {out}{hint}")
    return 0


def print_summary(summary: Any, title: str) -> None:
    """Print a summary DataFrame as a rich table: one row per quantity, one column per split."""
    # deferred: rich adds about 30 ms, a third of medssl --help, and only validate prints a table
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    for split in summary.index:
        table.add_column(str(split), overflow="fold")
    for name, values in summary.T.iterrows():
        table.add_row(str(name), *("" if v != v else str(v) for v in values.tolist()))
    Console().print(table)


def run_validate(args: argparse.Namespace) -> int:
    # deferred: medssl.data pulls torch and pandas (seconds); the CLI imports every command module at start-up
    from medssl.data import missing_labels, open_cohort, summarize_cohort, validate_cohort

    cohort = open_cohort(args.source, args.modality, args.data_root)
    summary = summarize_cohort(cohort) if args.headers_only else validate_cohort(cohort)
    print_summary(summary, f"{cohort.layout} cohort {cohort.source} ({cohort.modality}, {cohort.image_shape})")
    if cohort.unseen_sites:
        print(f"sites unseen in train: {', '.join(cohort.unseen_sites)}")
    missing = missing_labels(cohort)
    if missing and not args.allow_missing:
        raise DataError(f"{'; '.join(missing)}; fill them in, or pass --allow-missing to accept a cohort "
                        "whose training scans cannot feed age- or site-using objectives and probes")
    for line in missing:
        print(f"accepted with --allow-missing: {line}")
    print("ok" if not args.headers_only else "ok (headers only: voxels not read)")
    return 0


def run_check_leakage(args: argparse.Namespace) -> int:
    # deferred: medssl.data pulls torch and pandas (seconds); the CLI imports every command module at start-up
    from medssl.data import check_leakage, check_split_leakage, open_cohort

    a, b = open_cohort(args.a, args.modality), open_cohort(args.b, args.modality)
    mode = "warn" if args.warn else "error"
    problems = check_leakage(a, b, on=tuple(args.on), mode=mode)
    problems += check_split_leakage(a, mode) + check_split_leakage(b, mode)
    print(f"{len(problems)} leakage problem(s)" if problems else f"no leakage between {args.a} and {args.b}")
    return 0
