"""``medssl export-hub``: a trained run as a Hugging Face model folder, ready for ``huggingface-cli upload``.

``OUT/model.safetensors`` (the backbone's weights, no pickle), ``OUT/config.json`` (the encoder card that
``load_encoder`` reads: backbone and its kwargs, input grid and voxel size, modality, preprocessing, feature
size, the objective, the pretraining cohort's name and size) and ``OUT/README.md`` (the model card: YAML
front matter for the Hub, then cohort, method and hyper-parameters, evaluation, intended use, limitations).
No local path and no participant ID enters the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from medssl import __version__
from medssl.config import load_yaml
from medssl.data import open_cohort
from medssl.data.provenance import describe_cohort
from medssl.errors import DataError
from medssl.models.encoder_io import load_encoder, resolve_encoder_path
from medssl.models.hub import CONFIG_FILE, MODEL_CARD_FILE, WEIGHTS_FILE, write_weights
from medssl.utils.io import atomic_path, ensure_writable

# pretraining settings reported in the model card: (config section, key)
TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_epochs",
              "grad_clip", "precision", "seed")
EVAL_ROWS = (("mae_internal", "age MAE, internal test (years)", "{:.2f}"),
             ("mae_external", "age MAE, external test: unseen sites (years)", "{:.2f}"),
             ("bacc_site", "site balanced accuracy, internal test (lower = less site information)", "{:.3f}"),
             ("site_chance", "site chance level (1 / training sites)", "{:.3f}"),
             ("challenge_score", "challenge score mae_external * bacc_site^0.3 (lower is better)", "{:.3f}"),
             ("alignment", "alignment (Wang & Isola; lower = views closer)", "{:.3f}"),
             ("uniformity", "uniformity (log E exp(-2 d^2); lower = more spread)", "{:.3f}"))


def export_hub(source: str | Path, out: str | Path, *, overwrite: bool = False, repo_id: str | None = None,
               license_id: str = "other") -> Path:
    """Write the model folder of ``source`` (a run folder or its ``encoder.pt``) into ``out``.

    ``repo_id`` (``ORG/NAME``) only fills the model card's usage lines; ``license_id`` is its SPDX id
    (``other`` by default: the weights inherit the terms of the data they were trained on).

    Raises:
        OutputExistsError: ``out`` is not empty and ``overwrite`` is False (checked before any work).
        DataError: the encoder files are missing or do not match.
    """
    out = ensure_writable(Path(out), overwrite)
    backbone, card = load_encoder(source)  # checks the weights against the card
    run_dir = resolve_encoder_path(source).parent
    config = run_config(run_dir, card)
    metrics = _read_json(run_dir / "eval" / "metrics.json")
    hub_config = encoder_config(card)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_weights(tmp / WEIGHTS_FILE, backbone.state_dict())
        (tmp / CONFIG_FILE).write_text(json.dumps(hub_config, indent=2) + "\n")
        (tmp / MODEL_CARD_FILE).write_text(model_card(hub_config, config, metrics, card, repo_id, license_id,
                                                      resumed=any(run_dir.glob("config.before-resume-*"))))
    return out


def run_config(run_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """The resolved config the run ran with: ``RUN/config.yaml`` (with its ``_run`` provenance), else the
    card's copy."""
    path = run_dir / "config.yaml"
    if path.is_file():
        return load_yaml(path.read_text()) or {}
    return dict(card.get("config") or {})


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-run medssl evaluate on the run") from exc


def pretraining_cohort(card: dict[str, Any]) -> dict[str, Any]:
    """The card's ``pretraining_cohort`` (recorded by ``pretrain``); for older runs, a description made
    now when the recorded cohort folder still exists, else ``{"name": "not recorded"}``."""
    if card.get("pretraining_cohort"):
        return dict(card["pretraining_cohort"])
    source = card.get("cohort")
    if source and Path(source).exists():
        return describe_cohort(open_cohort(source, modality=card.get("modality") or "vbm"))
    return {"name": "not recorded (a run made before medssl recorded its cohort)"}


def encoder_voxel_size(card: dict[str, Any], cohort: dict[str, Any]) -> list[float] | None:
    """Voxel size (mm) of the encoder's input: the stored one, scaled by ``stored / input`` shape when
    the preprocessing resamples (crop/pad keeps it)."""
    stored = cohort.get("voxel_size_mm")
    prep = card.get("preprocessing") or {}
    shape, image_shape = prep.get("shape") or card.get("input_shape"), cohort.get("image_shape")
    if stored is None or prep.get("resize") != "resample" or not shape or not image_shape:
        return stored
    return [round(v * s / n, 4) for v, s, n in zip(stored, image_shape, shape)]


def encoder_config(card: dict[str, Any]) -> dict[str, Any]:
    """``config.json``: the encoder card without local paths (no ``cohort`` path, no full config)."""
    cohort = pretraining_cohort(card)
    return {
        "library": "medssl",
        "medssl_version": __version__,
        "backbone": card["backbone"],
        "num_features": card["num_features"],
        "input_shape": card.get("input_shape"),
        "voxel_size_mm": encoder_voxel_size(card, cohort),
        "modality": card.get("modality"),
        "preprocessing": card.get("preprocessing"),
        "method": card.get("method"),
        "loss": card.get("loss"),
        "regularizer": card.get("regularizer"),
        "objective": card.get("objective"),
        "pretraining_cohort": {k: v for k, v in cohort.items() if k != "layout"},
    }


def _spec(spec: dict[str, Any] | None) -> str:
    """``infonce (temperature=0.1)``."""
    if not spec:
        return "none"
    kwargs = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name')} ({kwargs})" if kwargs else str(spec.get("name"))


def _front_matter(hub: dict[str, Any], license_id: str) -> str:
    method = hub.get("method") or "pretrained"
    loss = (hub.get("loss") or {}).get("name")
    tags = ["medssl", "medical-imaging", "neuroimaging", "brain-mri", "3d", "self-supervised-learning",
            "contrastive-learning", hub["backbone"]["name"], method, *([loss] if loss and loss != "none" else [])]
    meta = {"library_name": "medssl", "license": license_id, "pipeline_tag": "feature-extraction",
            "tags": list(dict.fromkeys(tags))}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _evaluation(metrics: dict[str, Any] | None, card: dict[str, Any], cohort: dict[str, Any]) -> list[str]:
    if metrics is None:
        return ["Not evaluated yet: `medssl evaluate` on the run writes `RUN/eval/metrics.json`, which the "
                "next export reports here."]
    same = metrics.get("data_source") in (card.get("cohort"), (card.get("config") or {}).get("data", {}).get("source"))
    where = (f"the held-out splits of the pretraining cohort ({cohort.get('name')})" if same
             else "another cohort (not named here)")
    lines = [f"Frozen features, OpenBHB challenge probes (ridge for age, logistic regression for site, "
             f"fitted on {metrics.get('n_train')} training scans), on {where}: {metrics.get('n_internal')} "
             f"internal and {metrics.get('n_external')} external test scans (`cv: {metrics.get('cv')}`).", "",
             "| metric | value |", "|---|---|"]
    for key, label, fmt in EVAL_ROWS:
        if isinstance(metrics.get(key), (int, float)):
            lines.append(f"| {label} | {fmt.format(metrics[key])} |")
    base = metrics.get("baselines") or {}
    rows = [(name, b) for name, b in base.items() if isinstance(b, dict) and "mae_external" in b]
    if rows:
        lines += ["", "Reference rows on the same data and probes:", "",
                  "| representation | MAE int | MAE ext | site BAcc | challenge score |", "|---|---|---|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {b['mae_internal']:.2f} | {b['mae_external']:.2f} | "
                  f"{b['bacc_site']:.3f} | {b['challenge_score']:.3f} |" for name, b in rows]
    if "synthetic" in str(cohort.get("name")):
        lines += ["", "**Synthetic data**: these numbers check that the pipeline runs; they are not comparable "
                  "with results on real scans."]
    return lines


def model_card(hub: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any] | None,
               card: dict[str, Any], repo_id: str | None, license_id: str, resumed: bool = False) -> str:
    """The Hugging Face model card (``README.md``): front matter, then what a user of the encoder needs."""
    cohort = hub["pretraining_cohort"]
    train = config.get("train") or {}
    objective = hub.get("objective") or {}
    run = config.get("_run") or {}
    name = repo_id or "ORG/NAME"
    voxel = hub.get("voxel_size_mm")
    size = (f"{cohort['n_subjects']} subjects ({cohort['n_scans']} scans) from {cohort['n_sites']} sites, "
            f"split `{cohort.get('split', 'train')}`" if "n_scans" in cohort else "size not recorded")
    studies = f"; studies: {', '.join(cohort['studies'])}" if cohort.get("studies") else ""
    lines = [
        f"# {hub['backbone']['name']} pretrained with medssl ({hub.get('method')}, {_spec(hub.get('loss'))})",
        "",
        f"A 3D brain-MRI encoder: `(B, 1, {', '.join(map(str, hub.get('input_shape') or ['D', 'H', 'W']))})` "
        f"{hub.get('modality')} volumes -> `(B, {hub['num_features']})` features. Weights: `model.safetensors`; "
        "architecture, input grid and preprocessing: `config.json`.",
        "",
        "## Use",
        "",
        "```python",
        "from medssl.models import load_encoder  # pip install medssl[hub]",
        "",
        f'encoder, card = load_encoder("hf://{name}")  # or the downloaded folder',
        "features = encoder.eval()(volumes)  # volumes: (B, 1, D, H, W), prepared as below",
        "```",
        "",
        f"`medssl evaluate hf://{name} --data OPENBHB_ROOT` scores it with the OpenBHB challenge probes; "
        f"`medssl finetune CONFIG init=hf://{name}` fine-tunes it.",
        "",
        "## Input",
        "",
        f"- modality: `{hub.get('modality')}`; grid {' x '.join(map(str, hub.get('input_shape') or []))} voxels"
        + (f" of {' x '.join(f'{v:g}' for v in voxel)} mm" if voxel else " (voxel size not recorded)"),
        f"- preprocessing: `{json.dumps(hub.get('preprocessing'))}`: crop/pad (or resample) to the grid, then a "
        "z-score of each whole volume (`medssl.data.CohortDataset` does both)",
        "",
        "## Pretraining",
        "",
        f"- cohort: {cohort.get('name')}, {size}{studies}",
        f"- method: `{hub.get('method')}`; loss: `{_spec(hub.get('loss'))}`; regulariser: "
        f"`{_spec(hub.get('regularizer'))}`",
        f"- objective: `total = alpha * loss + lambda * regularizer` with label `{objective.get('label') or 'none'}`, "
        f"bias `{objective.get('bias') or 'none'}`, alpha {objective.get('alpha')}, lambda {objective.get('lambda')}",
        f"- head (dropped after pretraining): `{_spec(config.get('head'))}`; views: `{_spec(config.get('views'))}`",
        "- training: " + ", ".join(f"{k} {train[k]}" for k in TRAIN_KEYS if k in train),
    ]
    if resumed:
        lines.append("- the run was resumed with a changed config; these are the settings of its last part")
    if run:
        versions = run.get("versions") or {}
        lines.append(f"- software: medssl {versions.get('medssl')} (git {run.get('git_sha')}), torch "
                     f"{versions.get('torch')}, python {run.get('python')}")
    lines += ["", "## Evaluation", "", *_evaluation(metrics, card, cohort), "",
              "## Intended use", "",
              "Research on brain MRI: frozen features or fine-tuning for brain-age, site-effect and clinical "
              "classification studies on volumes prepared like the pretraining data (same modality, grid and "
              "preprocessing).", "",
              "## Limitations", "",
              "- Not a medical device; not for diagnosis or any clinical decision.",
              "- Trained on the cohort above only: scanners, populations, ages and preprocessing pipelines "
              "outside it may give features that transfer poorly; check on your data (`medssl evaluate`).",
              "- Site information remains decodable unless the site BAcc above is near chance.",
              "- Fine-tuning on data that overlaps the pretraining cohort leaks information: medssl's leakage "
              "guard needs the pretraining cohort (`finetune.pretrain_cohort=PATH`), which this folder does "
              "not ship.",
              f"- License `{license_id}`: the weights also carry the terms of the data they were trained on.", ""]
    return _front_matter(hub, license_id) + "\n" + "\n".join(lines)
