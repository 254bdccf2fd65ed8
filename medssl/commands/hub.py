"""``medssl export-hub``: share a trained encoder as a Hugging Face model folder."""

from __future__ import annotations

import argparse
from typing import Any

NEXT_STEPS = """\
model folder written to {out}/ (model.safetensors, config.json, README.md)
load it:   medssl evaluate {out} --data SOURCE   |   python: medssl.models.load_encoder("{out}")
share it:  huggingface-cli upload {repo} {out} .   (then load_encoder("hf://{repo}"), init=hf://{repo})"""


def register(sub: Any) -> None:
    """Add ``export-hub`` to the ``medssl`` parser."""
    p = sub.add_parser(
        "export-hub", help="export a trained encoder as a Hugging Face model folder (safetensors + card)",
        description="Write model.safetensors (backbone weights, no pickle), config.json (architecture, input "
        "grid, voxel size, modality, preprocessing, feature size) and README.md (a model card: pretraining "
        "cohort, method, hyper-parameters, RUN/eval/metrics.json, intended use, limitations) into --out. "
        "No local path enters the folder. load_encoder, medssl evaluate and medssl finetune init= accept "
        "the folder, or hf://ORG/NAME[@REVISION] once uploaded (pip install medssl[hub]).")
    p.add_argument("run", help="run folder (with encoder.pt + encoder.json) or its encoder.pt")
    p.add_argument("--out", required=True, help="model folder to write, e.g. hub/yaware_tiny")
    p.add_argument("--repo-id", default=None, metavar="ORG/NAME",
                   help="the Hub repository the folder is meant for (fills the card's usage lines)")
    p.add_argument("--license", default="other",
                   help="SPDX licence id for the card (default: other; weights carry their data's terms)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out folder")
    p.set_defaults(func=run_export_hub)


def run_export_hub(args: argparse.Namespace) -> int:
    # deferred: medssl.pipelines pulls torch and MONAI (seconds); the CLI imports every command module at start-up
    from medssl.pipelines.hub_export import export_hub

    out = export_hub(args.run, args.out, overwrite=args.overwrite, repo_id=args.repo_id,
                     license_id=args.license)
    print(NEXT_STEPS.format(out=out, repo=args.repo_id or "ORG/NAME"))
    return 0
