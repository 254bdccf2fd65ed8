"""The study schema: one YAML file = one study (its arms, seeds, cohort and recipe) at one scale.

A study YAML is read with ``medssl.config.load_config`` like every other experiment, so ``key=value``
overrides work (``seeds=[0,1] pretrain.train.epochs=2 cohort.n_subjects=48``). ``pretrain`` and each
entry of ``arms`` are *partial* ``PretrainConfig`` mappings merged in that order over the optional
``base`` YAML; a component whose ``name`` changes drops the recipe's kwargs (``medssl.config.merge``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from medssl.config.core import from_dict, load_config, load_yaml, merge
from medssl.config.pretrain import PretrainConfig
from medssl.errors import ConfigError

STUDIES = ("regression", "transfer", "sensitivity")


@dataclasses.dataclass
class CohortSection:
    """The pretraining cohort: an existing one (``source``) or a synthetic one written into the study."""

    source: str | None = None  # OpenBHB root / manifest CSV; None = synthesise with the fields below
    modality: typing.Literal["vbm", "quasiraw"] = "vbm"
    cohort: str = "healthy"
    n_subjects: int = 200
    n_sites: int | None = None  # training sites (None: the preset's, 6 standard / 12 hard)
    n_external_sites: int | None = None  # sites only in external_test (None: the preset's, 2 / 4)
    shape: list[int] = dataclasses.field(default_factory=lambda: [24, 28, 24])
    seed: int = 0
    preset: typing.Literal["standard", "hard"] = "standard"  # the synthetic generator's difficulty
    device: typing.Literal["cpu", "cuda", "auto"] = "cpu"  # where a synthetic cohort is simulated


@dataclasses.dataclass
class TransferSection:
    """Fine-tuning tasks of the transfer study (``medssl finetune`` once per task and seed)."""

    tasks: list[str] = dataclasses.field(default_factory=lambda: ["scz", "bd", "asd"])
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)  # task -> manifest (else synthetic)
    base: str | None = "configs/finetune/{task}.yaml"  # partial FinetuneConfig YAML; {task} is filled in
    finetune: dict[str, Any] = dataclasses.field(default_factory=dict)  # partial FinetuneConfig
    scratch: bool = True  # add the from-scratch baseline
    n_subjects: int = 120  # synthetic clinical cohorts
    n_sites: int = 4
    n_external_sites: int = 2


@dataclasses.dataclass
class GridSection:
    """Sensitivity grid: every arm is run at every (sigma, tau)."""

    sigma: list[float] = dataclasses.field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    tau: list[float] = dataclasses.field(default_factory=lambda: [0.05, 0.1, 0.5])


def upgrade_study(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """One layer of a study config with its partial pretrain configs upgraded (``objective:`` keys)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if isinstance(out.get("pretrain"), dict):
        out["pretrain"] = PretrainConfig.upgrade(out["pretrain"], f"{where}: pretrain")
    if isinstance(out.get("arms"), dict):
        out["arms"] = {name: PretrainConfig.upgrade(arm, f"{where}: arms.{name}")
                       for name, arm in out["arms"].items()}
    return out


@dataclasses.dataclass
class StudyConfig:
    """``medssl study``: pretrain every arm x seed, evaluate, aggregate, test the seed's hypotheses."""

    study: typing.Literal["regression", "transfer", "sensitivity"] = "regression"
    scale: typing.Literal["cpu", "gpu", "full"] = "cpu"
    description: str = ""
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    base: str | None = None  # pretrain YAML under every arm (e.g. configs/pretrain/exp_resnet18.yaml)
    pretrain: dict[str, Any] = dataclasses.field(default_factory=dict)  # partial PretrainConfig
    arms: dict[str, Any] = dataclasses.field(default_factory=dict)  # arm -> partial PretrainConfig
    cohort: CohortSection = dataclasses.field(default_factory=CohortSection)
    transfer: TransferSection = dataclasses.field(default_factory=TransferSection)
    grid: GridSection = dataclasses.field(default_factory=GridSection)
    evaluate: dict[str, Any] = dataclasses.field(default_factory=lambda: {"batch_size": 16})
    baselines: bool = False  # regression: raw-voxel and ComBat reference rows (first arm, first seed)
    out: str = "runs/study"

    upgrade = staticmethod(upgrade_study)


# what a study's ``evaluate:`` section may set: medssl.pipelines.evaluate.evaluate's keywords, less those the
# study sets itself (encoder, cohort, out, overwrite, progress, baselines); tests/studies check the match
EVALUATE_OPTIONS = ("batch_size", "device", "num_workers", "n_jobs", "cv", "cv_kwargs", "alt_probes",
                    "alignment_views", "baseline_features", "data_root", "seed", "embedding_points")


def load_study(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a study YAML (plus overrides) and check it before any work is done.

    Raises:
        ConfigError: unknown keys, no arms or seeds, repeated seeds, an arm that is not a mapping.
    """
    cfg = load_config(path, overrides, StudyConfig)
    where = path or "the study config"
    if not cfg.arms:
        raise ConfigError(f"{where}: 'arms' is empty; give at least one arm (name: {{partial pretrain config}})")
    for name, spec in cfg.arms.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: arms.{name} must be a mapping of pretrain config sections, got {spec!r}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of distinct integers, got {cfg.seeds}")
    if cfg.study == "sensitivity" and (not cfg.grid.sigma or not cfg.grid.tau):
        raise ConfigError(f"{where}: grid.sigma and grid.tau must be non-empty lists")
    unknown = sorted(set(cfg.evaluate) - set(EVALUATE_OPTIONS))
    if unknown:
        raise ConfigError(f"{where}: evaluate.{unknown[0]} is not an option of the evaluation; use "
                          f"{', '.join(EVALUATE_OPTIONS)}")
    if cfg.study == "transfer" and not cfg.transfer.tasks:
        raise ConfigError(f"{where}: transfer.tasks is empty; use e.g. [scz, bd, asd]")
    for name, spec in cfg.arms.items():  # every arm's config now, not when its turn comes
        try:
            pretrain_config(cfg, spec, Path("data"), cfg.seeds[0], Path("out"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: arms.{name} (merged over base and pretrain): {exc}") from exc
    return cfg


def resolve_file(path: str | Path) -> Path:
    """``path`` as given (relative to the working folder), else relative to the repository root."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    repo = Path(__file__).resolve().parents[2] / path
    return repo if repo.is_file() else path


def pretrain_config(cfg: StudyConfig, arm: dict[str, Any], data: Path, seed: int, out: Path) -> PretrainConfig:
    """``base`` YAML <- ``pretrain`` <- ``arm`` <- (data.source, train.seed, out), checked by the schema."""
    raw: dict[str, Any] = {}
    if cfg.base:
        path = resolve_file(cfg.base)
        if not path.is_file():
            raise ConfigError(f"study base {cfg.base!r} does not exist (relative to the working folder "
                              "or the repository)")
        raw = PretrainConfig.upgrade(load_yaml(path.read_text()) or {}, str(path))
    raw = merge(merge(raw, cfg.pretrain), arm)
    raw = merge(raw, {"data": {"source": str(data), "modality": cfg.cohort.modality},
                      "train": {"seed": seed}, "out": str(out)})
    return from_dict(PretrainConfig, raw)
