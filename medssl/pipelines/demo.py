"""``medssl demo``: the whole path on the embedded synthetic cohort, sized for 2 CPU cores.

synthetic OpenBHB-layout cohort (from nilearn's MNI152 template) -> data summary + figure ->
SimCLR and y-aware pretraining of a small 3D CNN -> challenge-identical probes on each encoder and on
raw voxels -> one comparison table and figure.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medssl.config import PretrainConfig, load_config
from medssl.utils.io import ensure_writable, write_text

# Laptop-sized recipe shared by both arms; only the loss differs (the point of the comparison).
DEMO_RECIPE = [
    "model.name=tiny_cnn3d", "model.width=16",
    "head.name=mlp", "head.hidden_dims=[128]", "head.out_dim=64",
    "views.name=yaware", "views.backend=torch",
    "train.batch_size=16", "train.lr=1.0e-3", "train.schedule=cosine", "train.warmup_epochs=1",
    "train.device=auto", "train.log_every=5",
]
ARMS = {
    "simclr": ["loss.name=infonce", "loss.temperature=0.1"],
    "yaware": ["loss.name=yaware", "loss.temperature=0.1", "loss.sigma=5.0", "objective.label=age"],
}
DEMO_COHORT = dict(cohort="healthy", n_subjects=160, n_sites=6, n_external_sites=2,
                   shape=(32, 40, 32), seed=0)


def demo(out: str | Path = "runs/demo", epochs: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the demo into ``out``; returns ``{arm: metrics}`` (also written to ``out/comparison.md``)."""
    from medssl.data import make_synthetic_cohort, plot_cohort, summarize_cohort, open_cohort
    from medssl.pipelines.evaluate import evaluate

    out = ensure_writable(Path(out), overwrite)
    t0 = time.perf_counter()
    data = out / "data"
    print(f"[1/4] synthetic cohort -> {data}")
    make_synthetic_cohort(data, layout="hf", **DEMO_COHORT)
    cohort = open_cohort(data)
    print(summarize_cohort(cohort).to_string())
    plot_cohort(cohort, out / "cohort.png")

    results: dict[str, Any] = {}
    for i, (arm, loss) in enumerate(ARMS.items(), start=2):
        with_baselines = i == 2  # raw-voxel baselines do not depend on the encoder: compute once
        print(f"[{i}/4] pretrain {arm}")
        overrides = DEMO_RECIPE + loss + [f"data.source={data}", f"out={out / arm}",
                                          f"train.epochs={epochs or 15}"]
        cfg = load_config(None, overrides, PretrainConfig)
        from medssl.pipelines.pretrain import pretrain

        run = pretrain(cfg)
        results[arm] = evaluate(run, data, out=run / "eval", progress=False,
                                baselines=with_baselines)
    print("[4/4] raw-voxel baseline and comparison")
    baselines = results[next(iter(results))].get("baselines", {})
    for key in ("raw_voxels", "raw_voxels_combat"):
        if isinstance(baselines.get(key), dict):
            results[key.replace("_", " ")] = baselines[key]
    table = comparison_table(results)
    write_text(out / "comparison.md", table + "\n")
    print(table)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}")
    return results


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the challenge metrics, one row per representation."""
    cols = ["mae_internal", "mae_external", "bacc_site", "site_chance", "challenge_score"]
    lines = ["| representation | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, metrics in results.items():
        cells = [f"{metrics[c]:.3f}" if isinstance(metrics.get(c), (int, float)) else "–" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
