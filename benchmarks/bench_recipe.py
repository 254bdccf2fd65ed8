"""The published L_exp recipe's wall time on one device (issue 18, target 2), projected from the sustained
volumes/s of ``medssl pretrain`` itself, data path included.

1. ``cohort``: ``medssl synth`` at the recipe's grid (VBM, 121x145x121) on ``--device`` (timed).
2. ``once``: ``medssl pretrain configs/pretrain/exp_resnet18.yaml`` on it for ``--epochs`` epochs, with
   ``data.cache`` (``device``: the cohort held on the card, no DataLoader; ``none``: ``--workers`` loader
   processes), no probes, checkpoints as the recipe writes them. Views ``none``: the encoder runs once a
   subject (issue 18, target 1).
3. ``twice`` (unless ``--skip-twice``): the same run with the second view a copy of the first, so the
   encoder sees both, as before target 1; ``once`` / ``twice`` is the gain of computing identical views once.
4. sustained volumes/s = ``2 x subjects x (E - 1) / (elapsed_E - elapsed_1)`` from ``metrics.jsonl``'s epoch
   records (``time/elapsed_s``): the first epoch (cuDNN autotuning, cache fill) is left out, every later
   epoch's end (checkpoint) is in. Projected recipe time = ``2 x 3227 x 300 / sustained`` (OpenBHB's
   3,227 training subjects, 300 epochs, two views a subject); the target is 20 minutes.

    python benchmarks/bench_recipe.py --device cuda --subjects 1024 --epochs 4 \\
        --out benchmarks/results/recipe_cuda.json
    python benchmarks/bench_recipe.py --smoke --out /tmp/recipe.json   # CPU, tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import yaml  # noqa: E402

from bench_common import environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs/pretrain/exp_resnet18.yaml"
OPENBHB_TRAIN_SUBJECTS, RECIPE_EPOCHS, TARGET_MIN = 3227, 300, 20.0

# ``python -c`` body of the ``twice`` arm: medssl's CLI with the second view copied when both are the
# same tensor (SiameseContrastive then runs the encoder on both, as it did before identical views ran once)
TWICE = """
import sys
import medssl.engine.train as engine
make_views = engine.make_views
def copied(*args, **kwargs):
    views = make_views(*args, **kwargs)
    return [views[0], views[1].clone()] if len(views) == 2 and views[1] is views[0] else views
engine.make_views = copied
from medssl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(cmd: list[str], log: Path, timeout: float) -> float:
    """Run ``cmd`` with its output in ``log``; its wall seconds (a failure raises with the log's tail)."""
    start = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "MEDSSL_PROGRESS": "0"})
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{log.read_text()[-2000:]}")
    return time.perf_counter() - start


def sustained(metrics: Path, batch_size: int) -> dict[str, Any]:
    """Volumes/s over epochs 2..E from the epoch records (``step``, ``time/elapsed_s``), each epoch's
    seconds, and the subjects an epoch saw (its steps x ``batch_size``).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> _ = path.write_text("".join(json.dumps({"step": s, "time/elapsed_s": t}) + "\\n"
    ...                             for s, t in [(10, 5.0), (20, 7.0), (30, 9.0)]))
    >>> sustained(path, 10)["vol_per_s"]  # 2 views x 10 steps x 10 subjects x 2 epochs in 4 s
    100.0
    """
    records = [r for r in map(json.loads, metrics.read_text().splitlines()) if "time/elapsed_s" in r]
    if len(records) < 2:
        raise RuntimeError(f"{metrics} has {len(records)} epoch record(s); the sustained rate needs 2 or more")
    subjects = (records[-1]["step"] - records[0]["step"]) * batch_size
    elapsed = [r["time/elapsed_s"] for r in records]
    return {"vol_per_s": 2 * subjects / (elapsed[-1] - elapsed[0]),
            "subjects_per_epoch": records[0]["step"] * batch_size,
            "epoch_s": [round(b - a, 3) for a, b in zip([0.0, *elapsed], elapsed)]}


def pretrain_arm(name: str, args: argparse.Namespace, cohort: Path, work: Path) -> dict[str, Any]:
    """One ``medssl pretrain`` run of the recipe (``once`` or ``twice``): wall time, sustained rate and
    the projected recipe minutes."""
    out = work / name
    overrides = [f"data.source={cohort}", f"data.cache={args.cache}", f"data.num_workers={args.workers}",
                 f"train.epochs={args.epochs}", "train.probe_every=0", f"train.device={args.device}",
                 f"out={out}", *args.set]
    prefix = [sys.executable, "-m", "medssl.cli"] if name == "once" else [sys.executable, "-c", TWICE]
    wall = run([*prefix, "pretrain", str(args.config), *overrides], work / f"{name}.log", args.timeout)
    batch_size = yaml.safe_load((out / "config.yaml").read_text())["train"]["batch_size"]
    rate = sustained(out / "metrics.jsonl", batch_size)
    minutes = 2 * OPENBHB_TRAIN_SUBJECTS * RECIPE_EPOCHS / rate["vol_per_s"] / 60
    return {"wall_s": round(wall, 2), **rate, "projected_recipe_min": round(minutes, 1),
            "meets_20_min": minutes <= TARGET_MIN, "overrides": overrides}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--subjects", type=int, default=1024, help="subjects in the synthetic cohort")
    p.add_argument("--shape", nargs=3, type=int, default=[121, 145, 121], metavar=("D", "H", "W"))
    p.add_argument("--epochs", type=int, default=4, help="epochs per arm (the first is not timed)")
    p.add_argument("--cache", choices=["device", "none"], default="device", help="data.cache of the runs")
    p.add_argument("--workers", type=int, default=0, help="data.num_workers (with --cache none)")
    p.add_argument("--config", type=Path, default=RECIPE)
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides, e.g. model.name=tiny_cnn3d")
    p.add_argument("--skip-twice", action="store_true", help="only the identical-views-once arm")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds per command")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    p.add_argument("--smoke", action="store_true", help="CPU, 32 subjects of 16x20x16, tiny encoder, 2 epochs")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.subjects, args.shape, args.epochs = "cpu", 32, [16, 20, 16], 2
        args.set = [*args.set, "model.name=tiny_cnn3d", "train.batch_size=4", "train.channels_last=false"]
    result: dict[str, Any] = {"environment": environment(torch.device(args.device)),
                              "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="bench_recipe_") as tmp:
        work = Path(tmp)
        cohort = work / "cohort"
        result["cohort_s"] = round(run(
            [sys.executable, "-m", "medssl.cli", "synth", str(cohort), "--n-subjects", str(args.subjects),
             "--shape", *map(str, args.shape), "--device", args.device, "--modalities", "vbm", "--seed", "0"],
            work / "synth.log", args.timeout), 2)
        for name in ["once"] + ([] if args.skip_twice else ["twice"]):
            result[name] = pretrain_arm(name, args, cohort, work)
            print(name, json.dumps(result[name])[:300], flush=True)
    if "twice" in result:
        result["speedup_identical_views_once"] = result["once"]["vol_per_s"] / result["twice"]["vol_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"projected recipe time {result['once']['projected_recipe_min']} min "
          f"(target {TARGET_MIN:g}); written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
