"""``medssl export-openbhb`` and ``medssl check-submission``: the OpenBHB challenge (RAMP kit) submission."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

NEXT_STEPS = """\
submission written to {out}/ (estimator.py, weights.pth, metadata.pkl)
check it locally (synthetic kit, server calls, probes, four scores):
    medssl check-submission {out}
check it with the official kit (needs click<8.1; the two mask files at the kit root):
    cp -r {out} <brain_age_with_site_removal>/submissions/{name}
    cd <brain_age_with_site_removal> && ramp-test --submission {name} --quick-test
local scores of the same encoder with medssl's own embedder (the exported features match it to 1e-5):
    medssl evaluate {source} --data <kit root or OpenBHB root>"""


def register(sub: Any) -> None:
    """Add ``export-openbhb`` and ``check-submission`` to the ``medssl`` parser."""
    e = sub.add_parser(
        "export-openbhb", help="export a pretrained encoder as an OpenBHB RAMP submission",
        description="Write estimator.py (self-contained: no medssl, no MONAI), weights.pth and "
        "metadata.pkl into --out, checked against the RAMP sanitizer and medssl's backbone.")
    e.add_argument("source", help="run folder (with encoder.pt + encoder.json) or an encoder.pt file")
    e.add_argument("--out", required=True, help="submission folder, e.g. submissions/yaware_vbm")
    e.add_argument("--modality", choices=("vbm", "quasiraw"), default=None,
                   help="kit block to embed (default: the encoder card's modality)")
    e.add_argument("--batch-size", type=int, default=8, help="subjects per forward pass on the server")
    e.add_argument("--overwrite", action="store_true", help="replace an existing submission folder")
    e.set_defaults(func=run_export)

    c = sub.add_parser(
        "check-submission", help="run a submission like the RAMP server and print its four scores",
        description="Import estimator.py under the sanitizer's rules, call fit(None, None), set indices, "
        "predict on the full memory-mapped matrix, fit the server's probes and print mae_age, "
        "bacc_site, ext_mae_age and challenge_metric.")
    c.add_argument("submission", help="submission folder holding estimator.py")
    c.add_argument("--data", default=None,
                   help="kit root with data/{train,test}.{npy,tsv} and the two masks "
                   "(default: a small synthetic kit written to a temporary folder)")
    c.add_argument("--strict", action="store_true",
                   help="also reject any 'open' substring (the rule of older ramp-workflow releases)")
    c.add_argument("--n-jobs", type=int, default=None, help="probe grid-search workers")
    c.set_defaults(func=run_check)


def run_export(args: argparse.Namespace) -> int:
    from medssl.submit import export_openbhb

    out = export_openbhb(args.source, args.out, modality=args.modality, batch_size=args.batch_size,
                         overwrite=args.overwrite)
    print(NEXT_STEPS.format(out=out, name=out.name, source=args.source))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from medssl.submit import check_submission

    if args.data is not None:
        scores = check_submission(args.submission, args.data, strict=args.strict, n_jobs=args.n_jobs)
    else:
        from medssl.submit.check import write_synthetic_kit

        with tempfile.TemporaryDirectory(prefix="medssl-kit-") as tmp:
            kit = write_synthetic_kit(Path(tmp) / "kit")
            print(f"no --data: synthetic kit at {kit}")
            scores = check_submission(args.submission, kit, strict=args.strict, n_jobs=args.n_jobs)
    for key in ("mae_age", "bacc_site", "ext_mae_age", "challenge_metric"):
        print(f"{key:>16}: {scores[key]:.3f}")
    return 0
