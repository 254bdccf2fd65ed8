"""``medssl list``: what can be named in a config, each with one line on what it is, and the recipes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

KINDS = ("backbones", "heads", "losses", "kernels", "views", "methods", "probes")
RECIPES = "recipes"


def register(sub: Any) -> None:
    p = sub.add_parser("list", help="list components (losses, backbones, ...) and the recipes in configs/",
                       description="Every registered component with the first line of its docstring, and "
                       "every YAML recipe under configs/ with what it reproduces (its leading comment).")
    p.add_argument("kind", nargs="?", choices=(*KINDS, RECIPES), help="one kind (default: all)")
    p.set_defaults(func=run_list)


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring, without reST double backquotes."""
    lines = (obj.__doc__ or "").strip().splitlines()
    return lines[0].replace("``", "").strip() if lines else ""


def configs_dir() -> Path | None:
    """``configs/`` of the working folder, else of the source checkout medssl runs from."""
    for folder in (Path("configs"), Path(__file__).resolve().parents[2] / "configs"):
        if folder.is_dir():
            return folder
    return None


def recipe_description(path: Path) -> str:
    """The YAML's first comment line; a parenthesis left open there is followed onto the next comment
    lines up to where it closes."""
    comments = [line.lstrip("#").strip() for line in path.read_text().splitlines()[:3] if line.startswith("#")]
    first = comments[0] if comments else ""
    if first.count("(") > first.count(")"):
        text, depth = " ".join(comments), 0
        for i, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == ")" and depth == 0 and i >= len(first):
                return text[: i + 1]
    return first.rstrip(" ,:;")


def run_list(args: argparse.Namespace) -> int:
    # deferred: medssl.registry imports inspect (~7 ms, a tenth of medssl --help); the CLI imports every
    # command module at start-up
    from medssl import registry

    for kind in [args.kind] if args.kind and args.kind != RECIPES else [] if args.kind else KINDS:
        reg = getattr(registry, kind.upper())
        names = reg.names()
        print(f"{kind}:" + ("" if names else " (none)"))
        width = max(map(len, names), default=0)
        for name in names:
            print(f"  {name:<{width}}  {first_line(reg.get(name))}")
    if args.kind in (None, RECIPES):
        folder = configs_dir()
        if folder is None:
            print("recipes: no configs/ folder here (the recipes ship with the source repository)")
            return 0
        paths = sorted(folder.rglob("*.yaml"))
        print(f"recipes ({folder}; run one with medssl pretrain|finetune CONFIG key=value ...):")
        width = max((len(str(p.relative_to(folder.parent))) for p in paths), default=0)
        for path in paths:
            print(f"  {str(path.relative_to(folder.parent)):<{width}}  {recipe_description(path)}")
    return 0
