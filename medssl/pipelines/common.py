"""Pieces shared by the pipelines: cohort resolution, run folders, and building components from specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from medssl.config import DataConfig, ObjectiveConfig, component_kwargs, load_yaml, to_dict
from medssl.data import ensure_synthetic, open_cohort
from medssl.errors import OutputExistsError
from medssl.losses.combined import CombinedObjective
from medssl.registry import LOSSES
from medssl.utils.io import ensure_writable, write_text


def open_configured_cohort(data: DataConfig) -> Any:
    """``open_cohort`` for ``data.source``; ``synthetic`` builds (once) the embedded default cohort."""
    source: str | Path = data.source
    if data.source == "synthetic":
        source = ensure_synthetic(n_subjects=data.synthetic_subjects, shape=tuple(data.synthetic_shape))
    return open_cohort(source, modality=data.modality, data_root=data.data_root)


def build_objective(loss: dict[str, Any], regularizer: dict[str, Any],
                    objective: ObjectiveConfig) -> nn.Module | None:
    """``objective.alpha * loss + objective.lambda * regularizer`` from the config (None when no loss)."""
    if loss["name"] == "none":
        return None
    main = LOSSES.build(loss["name"], **component_kwargs(loss))
    reg = None
    if regularizer["name"] != "none":
        reg = LOSSES.build(regularizer["name"], **component_kwargs(regularizer))
    return CombinedObjective(main, reg, alpha=objective.alpha, lam=objective.lam)


def prepare_run_dir(run_dir: Path, cfg: Any, resume: bool | None, overwrite: bool,
                    state: str = "checkpoints/last.pt") -> bool:
    """Decide between a new run and a resume; returns True when resuming.

    ``resume=None``: the command has no ``--resume`` (a changed config is refused without offering it).

    ``state`` is the path, inside ``run_dir``, whose presence means there is progress to resume.

    Re-running the same config on a folder holding its checkpoint resumes it; ``resume=True`` also
    resumes with a changed config (e.g. more epochs), keeping the previous one as
    ``config.before-resume-<k>.yaml`` (the run's provenance: which epochs ran with which settings). A
    folder holding only ``config.yaml`` (a run that stopped before training began, e.g. on a config
    error) starts again. Anything else in a non-empty folder is refused unless ``overwrite``.
    """
    if overwrite:
        ensure_writable(run_dir, overwrite=True)
        return False
    if not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= {"config.yaml"}:
        return False
    ckpt, saved = run_dir / state, run_dir / "config.yaml"
    if ckpt.exists() and saved.exists():
        old = load_yaml(saved.read_text()) or {}
        old.pop("_run", None)
        new = to_dict(cfg)
        if old == new:
            return True
        if resume:  # keep the config the earlier epochs ran with: config.yaml is rewritten next
            archive = next(run_dir / f"config.before-resume-{k}.yaml" for k in range(1, 10_000)
                           if not (run_dir / f"config.before-resume-{k}.yaml").exists())
            write_text(archive, saved.read_text())
            return True
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise OutputExistsError(
            f"{run_dir} holds a run with another config (differs in: {', '.join(changed)}). "
            + ("Pass --resume to continue it with the new config, " if resume is not None else "Pass ")
            + "--overwrite to start again, or choose another out=RUN_DIR"
        )
    raise OutputExistsError(
        f"{run_dir} is not empty and holds no resumable run; pass --overwrite or choose another out="
    )
