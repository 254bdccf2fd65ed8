"""``medssl list``: what can be named in a config."""

from __future__ import annotations

import argparse
from typing import Any

KINDS = ("backbones", "heads", "losses", "kernels", "views", "methods", "probes")


def register(sub: Any) -> None:
    p = sub.add_parser("list", help="list registered components (losses, backbones, ...)")
    p.add_argument("kind", nargs="?", choices=KINDS, help="one kind (default: all)")
    p.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    from medssl import registry

    for kind in [args.kind] if args.kind else KINDS:
        reg = getattr(registry, kind.upper())
        print(f"{kind}: {', '.join(reg.names()) or '(none)'}")
    return 0
