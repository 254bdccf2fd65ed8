"""Source templates of the exported estimator.py: one architecture block per backbone plus the runtime.

Each template is an importable module; only the text below its ``# %% exported`` line is inlined, so the
imports above it must be a subset of ``medssl.submit.export.HEADER``'s (a test checks this).
"""

from __future__ import annotations

from pathlib import Path

from medssl.errors import ConfigError

MARKER = "# %% exported\n"
ARCH_TEMPLATES = {
    "tiny_cnn3d": "arch_tiny_cnn3d.py",
    "alexnet_3d": "arch_alexnet_3d.py",
    "resnet18_3d": "arch_resnet18_3d.py",
    "densenet121_3d": "arch_densenet121_3d.py",
}


def template_path(name: str) -> Path:
    """Path of the template file ``name`` (e.g. ``runtime.py``) in this folder."""
    return Path(__file__).with_name(name)


def exported_block(name: str) -> str:
    """The text of template ``name`` below its ``# %% exported`` line."""
    text = template_path(name).read_text()
    if MARKER not in text:
        raise ValueError(f"template {name} has no {MARKER.strip()!r} line")
    return text.split(MARKER, 1)[1].strip() + "\n"


def arch_template(architecture: str) -> str:
    """Template file name of ``architecture``; ``ConfigError`` lists the exportable ones otherwise."""
    if architecture not in ARCH_TEMPLATES:
        raise ConfigError(
            f"backbone {architecture!r} cannot be exported to OpenBHB: no plain-torch template. "
            f"Exportable backbones: {', '.join(sorted(ARCH_TEMPLATES))}"
        )
    return ARCH_TEMPLATES[architecture]
