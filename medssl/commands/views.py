"""``medssl views CONFIG [key=value ...] --out FIG.png``: look at the views a pretrain config makes."""

from __future__ import annotations

import argparse
from typing import Any

from medssl.errors import ConfigError
from medssl.utils.io import ensure_writable


def register(sub: Any) -> None:
    """Add ``medssl views`` to the ``medssl`` parser."""
    p = sub.add_parser(
        "views",
        help="draw a subject and its augmented views (three orthogonal mid-slices)",
        description="Load a pretrain config, read one subject as the training data loader would "
        "(crop/pad to data.shape, z-score) and draw it with N views of the config's view preset "
        "(views.name, views.backend) on its three mid-slices.",
    )
    p.add_argument("config", help="pretrain config YAML (e.g. configs/pretrain/yaware_densenet121.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. views.name=full")
    p.add_argument("--out", required=True, help="figure path (.png, .pdf, .svg)")
    p.add_argument("--n-views", type=int, default=4, help="number of views (default 4)")
    p.add_argument("--subject", type=int, default=0, help="row of the cohort table (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the views (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing figure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: medssl.methods, .data, .pipelines and .transforms pull torch and MONAI (seconds), medssl.config
    # yaml; the CLI imports every command module at start-up
    import medssl.methods  # noqa: F401  (registers METHODS, checked by PretrainConfig)
    from medssl.config import PretrainConfig, component_kwargs, load_config
    from medssl.data import CohortDataset
    from medssl.pipelines.common import open_configured_cohort
    from medssl.registry import VIEWS
    from medssl.transforms import monai_view_transform
    from medssl.transforms.plot import plot_views

    if not args.overwrite:
        ensure_writable(args.out)  # refuse before any work; with --overwrite the write replaces it
    if args.n_views < 1:
        raise ConfigError(f"--n-views must be >= 1, got {args.n_views}")
    cfg = load_config(args.config, args.overrides, PretrainConfig)
    cohort = open_configured_cohort(cfg.data)
    dataset = CohortDataset(cohort, shape=cfg.data.shape, resize=cfg.data.resize)
    if not 0 <= args.subject < len(dataset):
        raise ConfigError(f"--subject {args.subject} is out of range: the cohort has {len(dataset)} scans")
    item = dataset[args.subject]
    preset, backend = cfg.views["name"], cfg.views.get("backend", "torch")
    kwargs = component_kwargs(cfg.views, "VIEWS")
    if backend == "monai":
        augmenter = monai_view_transform(preset, **kwargs)
    else:
        augmenter = VIEWS.build(preset, **kwargs)
    title = f"{item['participant_id']}: views {preset!r} ({backend}), seed {args.seed}"
    path = plot_views(item["image"], augmenter, args.out, n_views=args.n_views, seed=args.seed, title=title)
    print(path)
    return 0
