"""The ``medssl`` command: one entry point, one subcommand per job.

Each ``medssl.commands.<group>`` module exposes ``register(subparsers)``; subcommands are thin wrappers
over functions in ``medssl.pipelines`` (which notebooks call directly). Heavy imports happen inside the
commands, so ``medssl --help`` is fast. Errors meant for users (``MedsslError``) print one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import warnings
from importlib import metadata

from medssl import __version__
from medssl.errors import MedsslError, MedsslWarning

COMMAND_MODULES = (
    "medssl.commands.data",
    "medssl.commands.views",
    "medssl.commands.pretrain",
    "medssl.commands.evaluate",
    "medssl.commands.finetune",
    "medssl.commands.challenge",
    "medssl.commands.hub",
    "medssl.commands.study",
    "medssl.commands.misc",
)


def version_line() -> str:
    """``medssl 0.1.0 (torch 2.13.0+cpu, python 3.11.7)``, without importing torch."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"medssl {__version__} (torch {torch_version}, python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medssl",
        description="Contrastive pretraining of 3D brain-MRI encoders and transfer to clinical cohorts.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def show_medssl_warnings_as_one_line() -> None:
    """Print ``MedsslWarning`` as ``medssl: warning: ...`` (one line, no source line); others as usual."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, MedsslWarning):
            print(f"medssl: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    show_medssl_warnings_as_one_line()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in item and not item.startswith("-") for item in extra):
        args.overrides += extra  # key=value overrides written after a flag (e.g. --overwrite out=X)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except MedsslError as exc:
        print(f"medssl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medssl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
