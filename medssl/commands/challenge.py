"""``medssl export-openbhb`` and ``medssl check-submission``: the OpenBHB challenge (RAMP kit) submission."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

NEXT_STEPS = """\
submission written to {out}/ (estimator.py, weights.pth, metadata.pkl)
check it locally (a full-width stand-in of the kit's data, the server's calls, PASS or FAIL):
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
    e.add_argument("--allow-grid-mismatch", action="store_true",
                   help="export an encoder that was not pretrained on the challenge's grid (121x145x121 for "
                   "vbm, 182x218x182 for quasiraw); its estimator crops or resamples the server's volumes")
    e.set_defaults(func=run_export)

    c = sub.add_parser(
        "check-submission", help="run a submission like the RAMP server: its four scores, then PASS or FAIL",
        description="Import estimator.py under the sanitizer's rules, call fit(None, None), set indices, "
        "predict on the full memory-mapped matrix, fit the server's probes and print mae_age, bacc_site, "
        "ext_mae_age and challenge_metric. The last line is PASS (exit 0) or FAIL: <why> (exit 1); a --data "
        "folder that is not a kit is an error (exit 2).")
    c.add_argument("submission", help="submission folder holding estimator.py")
    c.add_argument("--data", default=None,
                   help="kit root with data/{train,test}.{npy,tsv} and the two masks (default: a stand-in of the "
                   "real kit in a temporary folder: random rows of 3,659,572 columns, masks of 519,945 vbm "
                   "and 1,827,095 quasi-raw voxels, 16 rows, about 230 MB)")
    c.add_argument("--strict", action="store_true",
                   help="also reject any 'open' substring (the rule of older ramp-workflow releases)")
    c.add_argument("--n-jobs", type=int, default=None, help="probe grid-search workers")
    c.set_defaults(func=run_check)


def run_export(args: argparse.Namespace) -> int:
    # deferred: medssl.submit pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.submit import export_openbhb

    out = export_openbhb(args.source, args.out, modality=args.modality, batch_size=args.batch_size,
                         overwrite=args.overwrite, allow_grid_mismatch=args.allow_grid_mismatch)
    print(NEXT_STEPS.format(out=out, name=out.name, source=args.source))
    return 0


def run_check(args: argparse.Namespace) -> int:
    # deferred: medssl.submit and medssl.data pull torch and MONAI (seconds); the CLI imports every command
    # module at start-up
    from medssl.data.kit_writer import write_standin_kit
    from medssl.submit.check import SubmissionFailure, check_submission

    with tempfile.TemporaryDirectory(prefix="medssl-kit-") as tmp:
        kit = args.data
        if kit is None:
            kit = write_standin_kit(Path(tmp) / "kit")
            print(f"no --data: a stand-in of the kit's data at {kit} (full-width random rows: the scores "
                  "mean nothing, the server's calls and the contract are checked)")
        try:
            scores = check_submission(args.submission, kit, strict=args.strict, n_jobs=args.n_jobs)
        except SubmissionFailure as exc:
            print(f"FAIL: {exc}")
            return 1
    for key in ("mae_age", "bacc_site", "ext_mae_age", "challenge_metric"):
        print(f"{key:>16}: {scores[key]:.3f}")
    where = f"the kit at {args.data}" if args.data else "the stand-in"
    print(f"PASS: {args.submission} runs as the RAMP server runs it on {where}")
    return 0
