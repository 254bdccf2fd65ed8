"""``evaluate``: a frozen encoder on a cohort -> challenge metrics, site-effect report; ``compare``: runs side by side.

Output folder (written atomically, refused if non-empty without ``overwrite``):
``metrics.json`` (challenge numbers, alignment/uniformity, per-fold details, baselines, provenance),
``predictions.csv``, ``per_site.csv``, ``report.md`` and the PNG figures of ``medssl.eval.report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Subset

from medssl.data import SPLITS, CohortDataset, open_cohort, require_labels
from medssl.errors import ConfigError
from medssl.eval.baselines import RawVoxels, score_baselines
from medssl.eval.encoder import challenge_metrics, cohort_folds
from medssl.eval.features import extract_features, view_pair_features
from medssl.eval.figures import comparison_figure
from medssl.eval.frozen import FrozenWeightsError, state_digest
from medssl.eval.metrics import alignment, uniformity
from medssl.eval.probes import ALTERNATIVE_PROBES
from medssl.eval.protocol import average_folds, per_site_table
from medssl.eval.report import markdown_table, write_report
from medssl.models import load_encoder
from medssl.models.encoder_io import encoder_name
from medssl.models.hub import hub_reference_name, is_hub_reference
from medssl.utils.device import resolve_device
from medssl.utils.io import atomic_path, ensure_writable, write_json, write_text
from medssl.utils.repro import environment_info

ALT_KEYS = ("mae_internal", "mae_external", "bacc_site", "challenge_score", "age_probe", "site_probe")


def default_out(encoder_source: str | Path) -> Path:
    """``RUN/eval`` for a run (or exported) folder, ``<stem>_eval`` beside an ``encoder.pt`` file,
    ``ORG--NAME_eval`` in the current folder for ``hf://ORG/NAME``."""
    if is_hub_reference(encoder_source):
        return Path(f"{hub_reference_name(str(encoder_source))}_eval")
    source = Path(encoder_source)
    return source / "eval" if source.is_dir() else source.parent / f"{source.stem}_eval"


def _open(data_source: str | Path, modality: str, data_root: str | Path | None) -> Any:
    return open_cohort(data_source, modality=modality, data_root=data_root)


def _dataset(cohort: Any, card: dict[str, Any]) -> Any:
    prep = card.get("preprocessing") or {}
    shape = prep.get("shape") or card.get("input_shape")
    return CohortDataset(cohort, shape=shape, resize=prep.get("resize", "crop_pad"),
                         normalize=prep.get("normalize", "zscore"))


def evaluate(
    encoder_source: str | Path,
    data_source: str | Path = "synthetic",
    out: str | Path | None = None,
    *,
    batch_size: int = 8,
    device: str = "auto",
    overwrite: bool = False,
    baselines: bool = False,
    baseline_features: int = 4096,
    cv: str = "fixed",
    cv_kwargs: dict[str, Any] | None = None,
    alt_probes: Sequence[str] = (),
    alignment_views: str = "yaware",
    data_root: str | Path | None = None,
    n_jobs: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    seed: int = 0,
    embedding_points: int = 3000,
) -> dict[str, Any]:
    """Evaluate a frozen encoder (run folder or ``encoder.pt``) on a cohort; returns ``metrics``.

    Every scan is embedded once (eval mode, no grad, the card's preprocessing); the RAMP probes are fitted
    per fold on the train rows (``cv``: ``fixed`` = the cohort's splits; ``site_kfold``, whose external
    sites default to the cohort's sites unseen in ``train``; ``leave_sites_out``; options in ``cv_kwargs``);
    the top-level numbers are the fold means. ``alt_probes`` (``scaled``, ``knn``,
    ``mlp``) add labelled non-challenge results; ``baselines`` adds raw-voxel and ComBat rows (raw volumes
    average-pooled to at most ``baseline_features`` voxels). The report's t-SNE figure draws at most
    ``embedding_points`` scans (0: no figure; a study's arms can skip its seconds).

    Raises:
        FrozenWeightsError: the encoder's weights or BatchNorm buffers changed during evaluation.
    """
    unknown = [p for p in alt_probes if p not in ALTERNATIVE_PROBES]
    if unknown:
        raise ConfigError(f"unknown alternative probe(s) {unknown}; choose from {', '.join(ALTERNATIVE_PROBES)}")
    encoder, card = load_encoder(encoder_source)
    cohort = _open(data_source, card.get("modality", "vbm"), data_root)
    require_labels(cohort, ("age", "site"), SPLITS,
                   "fill in the column: the challenge probes need the age and the site of every scan")
    out = ensure_writable(Path(out) if out is not None else default_out(encoder_source), overwrite)
    digest = state_digest(encoder)
    dataset = _dataset(cohort, card)
    dev = resolve_device(device)
    X, meta = extract_features(encoder, dataset, dev, batch_size, num_workers, progress)
    folds = cohort_folds(cohort, cv, cv_kwargs)
    metrics, per_fold, predictions = challenge_metrics(X, meta, folds, n_jobs)

    metrics.update(_geometry(encoder, dataset, X, folds[0].internal_test, alignment_views, dev, batch_size, seed))
    if alt_probes:
        metrics["alternative_probes"] = _alternatives(X, meta, folds, alt_probes, n_jobs)
    base: dict[str, dict[str, Any]] = {}
    if baselines:
        base = _baselines(X, meta, folds, dataset, baseline_features, dev, batch_size, num_workers, progress, n_jobs)
        metrics["baselines"] = base
    if state_digest(encoder) != digest:
        raise FrozenWeightsError("encoder state changed during evaluation")
    metrics.update(
        encoder=str(encoder_source), encoder_digest=digest, data_source=str(data_source), cv=cv,
        settings=eval_settings(cv=cv, cv_kwargs=cv_kwargs, alignment_views=alignment_views, seed=seed),
        cohort=repr(cohort), folds=per_fold if len(per_fold) > 1 else None, device=str(dev),
        environment=environment_info(),
    )
    _write(out, metrics, predictions, X, meta, cohort.site_names, base, embedding_points)
    return metrics


def _geometry(encoder: Any, dataset: Any, X: np.ndarray, internal: np.ndarray, views: str, dev: Any,
              batch_size: int, seed: int) -> dict[str, Any]:
    """Alignment of two ``views`` of (at most 256) internal-test scans; uniformity of all internal-test features."""
    z1, z2 = view_pair_features(encoder, Subset(dataset, internal[:256].tolist()), views, dev, batch_size, seed)
    return {"alignment": alignment(z1, z2), "uniformity": uniformity(X[internal]), "alignment_views": views,
            "n_alignment_pairs": len(z1)}


def _alternatives(X: np.ndarray, meta: pd.DataFrame, folds: list[Any], names: Sequence[str],
                  n_jobs: int | None) -> dict[str, Any]:
    """Fold-mean results of the opt-in probes, each labelled as outside the challenge protocol."""
    out = {}
    for name in names:
        pair = ALTERNATIVE_PROBES[name]
        mean, _, _ = challenge_metrics(X, meta, folds, n_jobs, pair["age"], pair["site"])
        out[name] = {"label": "NOT the challenge protocol", **{k: mean.get(k) for k in ALT_KEYS}}
    return out


def _baselines(X: np.ndarray, meta: pd.DataFrame, folds: list[Any], dataset: Any, max_features: int,
               dev: Any, batch_size: int, num_workers: int, progress: bool, n_jobs: int | None) -> dict[str, Any]:
    raw = RawVoxels(dataset.output_shape, max_features)
    X_raw, _ = extract_features(raw, dataset, dev, batch_size, num_workers, progress)
    out = {}
    for name, rows in score_baselines(X_raw, X, meta, folds, n_jobs).items():
        ok = [r for r in rows if "error" not in r]
        out[name] = average_folds(ok) if len(ok) == len(rows) else {"error": rows[0].get("error", "failed")}
        out[name]["features"] = f"avg-pool x{raw.factor} -> {raw.num_features}" if name.startswith("raw") \
            else f"encoder ({X.shape[1]})"
    return out


def _write(out: Path, metrics: dict[str, Any], preds: pd.DataFrame, X: np.ndarray, meta: pd.DataFrame,
           site_names: list[str], base: dict[str, Any], embedding_points: int) -> None:
    first = preds[preds.fold == preds.fold.iloc[0]]
    per_site = per_site_table(first)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_json(tmp / "metrics.json", metrics)
        preds.to_csv(tmp / "predictions.csv", index=False)
        per_site.assign(site_name=[site_names[int(s)] for s in per_site.site]).to_csv(tmp / "per_site.csv",
                                                                                        index=False)
        write_report(tmp, metrics, first, per_site, X, meta, site_names,
                     {k: v for k, v in base.items() if "error" not in v}, max_points=embedding_points)


COMPARE_KEYS = ("mae_internal", "rmse_internal", "mae_external", "bacc_site", "site_chance", "challenge_score",
                "alignment", "uniformity", "n_train", "n_internal", "n_external")


def _labels(sources: Sequence[str | Path]) -> list[str]:
    """Run-folder names (also for ``RUN/encoder.pt``), ``ORG--NAME`` of Hub references, else the
    weights file's stem; repeated names get ``#i``."""
    names = [encoder_name(s) for s in sources]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def eval_settings(cv: str = "fixed", cv_kwargs: dict[str, Any] | None = None, alignment_views: str = "yaware",
                  seed: int = 0, **_: Any) -> dict[str, Any]:
    """What, besides the encoder and the data, decides ``evaluate``'s numbers (``evaluate``'s defaults)."""
    return json.loads(json.dumps({"cv": cv, "cv_kwargs": dict(cv_kwargs or {}),
                                  "alignment_views": alignment_views, "seed": seed}))


def _reusable(path: Path, source: str | Path, data_source: str | Path,
              settings: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier ``metrics.json`` of the same encoder weights, data, folds and settings, else None."""
    if not path.is_file():
        return None

    old = json.loads(path.read_text())
    same = (old.get("data_source") == str(data_source) and old.get("settings") == settings
            and old.get("encoder_digest") == state_digest(load_encoder(source)[0]))
    return old if same else None


def compare(
    encoder_sources: Sequence[str | Path],
    data_source: str | Path = "synthetic",
    out: str | Path = "compare",
    *,
    overwrite: bool = False,
    reuse: bool = True,
    **evaluate_kwargs: Any,
) -> pd.DataFrame:
    """Evaluate several encoders on one cohort: ``OUT/comparison.{md,csv}``, ``OUT/comparison.png``.

    Each encoder is evaluated into ``OUT/<label>/`` unless ``reuse`` and its default eval folder already
    holds metrics of the same weights (digest) on the same ``data_source``, folds and settings.
    """
    if len(encoder_sources) < 1:
        raise ConfigError("compare needs at least one run folder or encoder.pt")
    out = ensure_writable(Path(out), overwrite)
    settings = eval_settings(**evaluate_kwargs)
    rows = []
    for label, source in zip(_labels(encoder_sources), encoder_sources):
        metrics = _reusable(default_out(source) / "metrics.json", source, data_source, settings) if reuse else None
        if metrics is None:
            metrics = evaluate(source, data_source, out / label, overwrite=overwrite, **evaluate_kwargs)
        rows.append({"run": label, **{k: metrics.get(k) for k in COMPARE_KEYS}})
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "comparison.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_text(out / "comparison.md", markdown_table(table) + "\n")
    if table.mae_external.notna().all():
        with atomic_path(out / "comparison.png") as tmp:
            comparison_figure(table, float(table.site_chance.iloc[0]), tmp)
    return table
