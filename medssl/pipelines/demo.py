"""``medssl demo``: the whole path on the embedded synthetic cohort, sized for 2 CPU cores.

synthetic OpenBHB-layout cohort (from nilearn's MNI152 template) -> data summary + figure ->
SimCLR and y-aware pretraining of a small 3D CNN -> challenge-identical probes on each encoder and on
raw voxels -> one comparison table and figure.

Running it again on the same folder reuses what is complete (the cohort, each encoder, each evaluation;
an interrupted pretraining resumes from its checkpoint) and prints the same table; ``overwrite`` starts
again. Training runs on one CPU thread (``train.num_threads=1``): the printed numbers then do not depend
on the number of cores, and a shared machine does not slow the tiny model down (benchmarks/README.md).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.config import PretrainConfig, load_config
from medssl.data import make_synthetic_cohort, open_cohort, plot_cohort, summarize_cohort
from medssl.data.synthetic.generate import GENERATOR_VERSION
from medssl.errors import OutputExistsError
from medssl.eval.figures import comparison_figure
from medssl.pipelines.evaluate import evaluate
from medssl.pipelines.pretrain import pretrain
from medssl.utils.io import atomic_path, ensure_writable, write_json, write_text

# Laptop-sized recipe shared by both arms; only the loss differs (the point of the comparison). Cutout
# views (those of the released y-aware model) let the contrastive loss fall well below its chance level
# within the 15 epochs; under the full y-aware view set it stays at chance at this size.
DEMO_RECIPE = [
    "model.name=tiny_cnn3d", "model.width=16",
    "head.name=mlp", "head.hidden_dims=[128]", "head.out_dim=64",
    "views.name=cutout", "views.backend=torch",
    "train.batch_size=16", "train.lr=1.0e-3", "train.schedule=cosine", "train.warmup_epochs=1",
    "train.device=auto", "train.num_threads=1", "train.log_every=5", "train.probe_every=5",
]
ARMS = {
    "simclr": ["loss.name=infonce", "loss.temperature=0.1"],
    "yaware": ["loss.name=yaware", "loss.temperature=0.1", "loss.sigma=5.0", "objective.label=age"],
}
DEMO_COHORT = dict(cohort="healthy", n_subjects=160, n_sites=6, n_external_sites=2,
                   shape=(32, 40, 32), seed=0)
DEMO_EPOCHS = 15
COLUMNS = ["mae_internal", "mae_external", "bacc_site", "site_chance", "challenge_score"]


def demo(out: str | Path = "runs/demo", epochs: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the demo into ``out`` (reusing its complete parts); returns ``{row: metrics}``, also written
    to ``out/comparison.md`` (the printed table) and ``out/comparison.png``.

    Raises:
        OutputExistsError: ``out`` holds something other than a demo with these settings (and not
            ``overwrite``).
    """
    out, t0 = Path(out), time.perf_counter()
    epochs = epochs or DEMO_EPOCHS
    settings = demo_settings(epochs)
    reuse = claim_folder(out, settings, overwrite)
    data = out / "data"
    if reuse and (data / "synthetic.json").is_file():
        print(f"[1/4] synthetic cohort: reusing {data}")
    else:
        print(f"[1/4] synthetic cohort -> {data}")
        make_synthetic_cohort(data, layout="hf", overwrite=True, **DEMO_COHORT)
    cohort = open_cohort(data)
    print(summarize_cohort(cohort).to_string())
    plot_cohort(cohort, out / "cohort.png")
    print(f"age MAE of the training-mean predictor: {mean_predictor_mae(cohort):.2f} (internal test); "
          "an encoder has learned age when its probes do better")

    results: dict[str, Any] = {}
    for i, (arm, loss) in enumerate(ARMS.items(), start=2):
        run = out / arm
        results[arm] = pretrain_and_evaluate(arm, loss, run, data, epochs, step=i, baselines=i == 2)
    print("[4/4] raw-voxel baseline and comparison")
    baselines = results[next(iter(results))].get("baselines", {})
    for key in ("raw_voxels", "raw_voxels_combat"):
        if isinstance(baselines.get(key), dict):
            results[key.replace("_", " ")] = baselines[key]
    table = comparison_table(results)
    write_text(out / "comparison.md", table + "\n")
    comparison_png(results, out / "comparison.png")
    print(table)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"report: {out / 'comparison.md'} and {out / 'comparison.png'}; per encoder: "
          + ", ".join(str(out / arm / "eval" / "report.md") for arm in ARMS))
    return results


def demo_settings(epochs: int) -> dict[str, Any]:
    """What decides the demo's numbers (``out/demo.json``): a folder made with others is not reused."""
    return json.loads(json.dumps({"cohort": DEMO_COHORT, "generator_version": GENERATOR_VERSION,
                                  "recipe": DEMO_RECIPE, "arms": ARMS, "epochs": epochs}))


def claim_folder(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Prepare ``out``; True when it holds a demo made with ``settings`` (whose complete parts are reused)."""
    marker = out / "demo.json"
    if overwrite:
        ensure_writable(out, overwrite=True)
    elif marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded != settings:
            changed = sorted(k for k in settings if recorded.get(k) != settings[k])
            raise OutputExistsError(f"{out} holds a demo made with other settings (differs in: "
                                    f"{', '.join(changed)}); pass --overwrite or choose another --out")
        return True
    else:
        ensure_writable(out)  # an unrelated non-empty folder is refused
    write_json(marker, settings)
    return False


def pretrain_and_evaluate(arm: str, loss: list[str], run: Path, data: Path, epochs: int, *, step: int,
                          baselines: bool) -> dict[str, Any]:
    """Pretrain one arm (skipped when ``run/encoder.pt`` exists; resumed from its checkpoint when cut
    short) and evaluate it (skipped when ``run/eval/metrics.json`` exists)."""
    cfg = load_config(None, DEMO_RECIPE + loss + [f"data.source={data}", f"out={run}",
                                                  f"train.epochs={epochs}"], PretrainConfig)
    if (run / "encoder.pt").is_file():
        print(f"[{step}/4] pretrain {arm}: reusing {run}")
    else:
        others = 2 * cfg.train.batch_size - 1
        print(f"[{step}/4] pretrain {arm} ({epochs} epochs)\n"
              f"      loss at chance = ln({others}) = {math.log(others):.3f} (each view picks its partner among "
              f"{others}); below it, the encoder tells subjects apart\n"
              f"      every {cfg.train.probe_every} epochs: probe_mae_age, probe_bacc_site = ridge / logistic "
              "probes on frozen features of the internal test")
        pretrain(cfg)
    metrics_path = run / "eval" / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    return evaluate(run, data, out=run / "eval", overwrite=True, progress=False, baselines=baselines)


def mean_predictor_mae(cohort: Any) -> float:
    """Internal-test age MAE of predicting every subject's age as the training mean."""
    table = cohort.table
    mean_age = table.loc[table["split"] == "train", "age"].mean()
    return float((table.loc[table["split"] == "internal_test", "age"] - mean_age).abs().mean())


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the challenge metrics, one row per representation."""
    lines = ["| representation | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, metrics in results.items():
        cells = [f"{metrics[c]:.3f}" if isinstance(metrics.get(c), (int, float)) else "–" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_png(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """External age MAE vs site BAcc of every row, over contours of the challenge score."""
    table = pd.DataFrame([{"run": name, **{c: m.get(c) for c in COLUMNS}} for name, m in results.items()])
    with atomic_path(path) as tmp:
        comparison_figure(table, float(table.site_chance.iloc[0]), tmp)
    return path
