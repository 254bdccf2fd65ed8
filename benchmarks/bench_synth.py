"""Synthetic-cohort generation speed (issue 17, item 2): ``medssl synth`` end to end, and the simulation alone.

- ``command``: ``python -m medssl.cli synth`` in a subprocess (interpreter start, imports, the template
  anatomy, host draws, simulation, float32 ``.npy`` writes; the HF layout, both modalities unless
  ``--modalities``): wall and CPU seconds, bytes written, seconds per subject. The cohort is written into
  ``--work-dir`` (a temporary folder by default) and deleted afterwards.
- ``baseline`` (with ``--compare-with SRC``): the same command with ``PYTHONPATH=SRC``, e.g. an export of
  an older commit (``git archive c6efcde medssl | tar -x -C /tmp/medssl-c6efcde``), measured the same way.
- ``simulate``: in this process, after a warm-up batch, ``--sim-subjects`` subjects through the host
  draws (``draw_scan``) and ``simulate_batch`` with no writes, synchronised (CPU: one torch thread, as
  each of the generator's CPU workers): seconds per subject of each part and the device's peak memory.
- with two ``--n-subjects``, ``marginal``: seconds per extra subject between the two sizes, i.e. without
  the start-up (interpreter, imports, template anatomy); ``speedup`` compares it with the baseline.

    python benchmarks/bench_synth.py --device cpu --n-subjects 24 48 --shape 121 145 121 --repeat 2 \\
        --compare-with /tmp/medssl-c6efcde --out benchmarks/results/synth_cpu.json
    python benchmarks/bench_synth.py --device cuda --n-subjects 2000 --shape 121 145 121 \\
        --out benchmarks/results/synth_cuda.json
    python benchmarks/bench_synth.py --smoke --out /tmp/synth_smoke.json   # seconds, CPU, tiny
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_command(src: Path, out: Path, args: argparse.Namespace, n_subjects: int) -> dict[str, Any]:
    """``medssl synth`` from the package under ``src`` in a subprocess: wall and CPU seconds, bytes."""
    cmd = [sys.executable, "-m", "medssl.cli", "synth", str(out), "--n-subjects", str(n_subjects),
           "--n-sites", str(args.n_sites), "--n-external-sites", str(args.n_external_sites),
           "--shape", *map(str, args.shape), "--seed", "0"]  # fmt: skip
    if src == REPO:  # options the older generator does not have
        cmd += ["--device", args.device, "--preset", args.preset, "--modalities", *args.modalities]
        cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)  # src first
    env = {**os.environ, "PYTHONPATH": path, "MEDSSL_PROGRESS": "0"}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    # cwd outside the repository: ``python -m`` puts the working directory before PYTHONPATH
    done = subprocess.run(cmd, env=env, cwd=out.parent, capture_output=True, text=True, timeout=args.timeout,
                          check=False)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    written = _du(out)
    shutil.rmtree(out)
    return {"argv": cmd[2:], "pythonpath": str(src), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "s_per_subject": round(wall / n_subjects, 4), "cpu_s_per_subject": round(cpu / n_subjects, 4),
            "subjects_per_s": round(n_subjects / wall, 2), "bytes_written": written,
            "mb_per_subject": round(written / n_subjects / 1e6, 2)}  # fmt: skip


def simulate_only(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Host draws and device simulation of ``--sim-subjects`` subjects, no writes (after a warm-up)."""
    from medssl.data.synthetic.design import design_cohort
    from medssl.data.synthetic.generate import _scans, default_batch_size
    from medssl.data.synthetic.simulate import MODALITIES, device_anatomy, simulate_batch

    shape = tuple(args.shape)
    n = args.sim_subjects
    batch = args.batch_size or default_batch_size(shape, device)
    start = time.perf_counter()
    anat = device_anatomy(shape, str(device))
    setup_s = time.perf_counter() - start
    size = max(n + batch, 4 * args.n_sites + 2 * args.n_external_sites)  # design_cohort's minimum
    table = design_cohort("healthy", size, args.n_sites, args.n_external_sites, np.random.default_rng(0), args.preset)
    scans = _scans(table, shape, 0, args.preset)
    modalities = [m for m in MODALITIES if m in args.modalities]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    threads = torch.get_num_threads()
    if device.type == "cpu":  # as each of make_synthetic_cohort's CPU workers runs
        torch.set_num_threads(1)
    simulate_batch(anat, [next(scans) for _ in range(batch)], modalities)  # warm-up
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    draw_s = sim_s = 0.0
    for first in range(0, n, batch):
        t0 = time.perf_counter()
        drawn = [next(scans) for _ in range(min(batch, n - first))]
        t1 = time.perf_counter()
        simulate_batch(anat, drawn, modalities)
        sync()
        draw_s, sim_s = draw_s + t1 - t0, sim_s + time.perf_counter() - t1
    torch.set_num_threads(threads)
    out = {"subjects": n, "batch_size": batch, "modalities": modalities, "anatomy_setup_s": round(setup_s, 2),
           "host_draw_s_per_subject": round(draw_s / n, 5), "device_s_per_subject": round(sim_s / n, 5),
           "subjects_per_s_device": round(n / sim_s, 2),
           "subjects_per_s_draws_and_device": round(n / (draw_s + sim_s), 2)}  # fmt: skip
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of repeated runs, with every run's wall and CPU seconds."""
    best = min(rows, key=lambda r: r["wall_s"])
    return {**best, "wall_s_all": [r["wall_s"] for r in rows], "cpu_s_all": [r["cpu_s"] for r in rows]}


def marginal(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float]:
    """Seconds per extra subject between two cohort sizes: the per-subject cost without start-up
    (interpreter, imports, the template anatomy), wall and CPU (each size's fastest run)."""
    extra = large["n_subjects"] - small["n_subjects"]
    return {"wall_s_per_subject": round((large["wall_s"] - small["wall_s"]) / extra, 4),
            "cpu_s_per_subject": round((min(large["cpu_s_all"]) - min(small["cpu_s_all"])) / extra, 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--n-subjects", type=int, nargs="+", default=[24],
                        help="cohort sizes; with two, the per-subject cost between them is reported too")  # fmt: skip
    parser.add_argument("--n-sites", type=int, default=4)
    parser.add_argument("--n-external-sites", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[121, 145, 121])
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--modalities", nargs="+", default=["vbm", "quasiraw"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--sim-subjects", type=int, default=None,
                        help="simulate-only subjects (default: 8 CPU, 256 CUDA)")
    parser.add_argument("--compare-with", type=Path, default=None, help="a package tree to time the same command with")
    parser.add_argument("--work-dir", type=Path, default=None, help="where cohorts are written (then deleted)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each command (alternating); the fastest is reported")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--skip", nargs="*", default=[], choices=["command", "baseline", "simulate"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the test suite's run)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synth_cpu.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.n_subjects, args.shape, args.sim_subjects = "cpu", [10, 14], [10, 12, 10], 4
        args.n_sites, args.n_external_sites, args.timeout = 2, 1, min(args.timeout, 300.0)
    from medssl.data.synthetic.generate import resolve_synth_device

    device = resolve_synth_device(args.device)
    args.sim_subjects = args.sim_subjects or (256 if device.type == "cuda" else 8)
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_synth.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(device),
    }
    sources = {"command_run": REPO} if "command" not in args.skip else {}
    if args.compare_with is not None and "baseline" not in args.skip:
        sources["baseline"] = args.compare_with.resolve()
    sizes = sorted(set(args.n_subjects))
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(name, n): [] for name in sources for n in sizes}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for _ in range(args.repeat):  # alternate, so that a change of machine load hits both alike
            for name, n in runs:
                runs[name, n].append({"n_subjects": n, **run_command(sources[name], Path(tmp) / name, args, n)})
                print(json.dumps({name: runs[name, n][-1]}), flush=True)
    for name in sources:
        results[name] = {str(n): _best(runs[name, n]) for n in sizes}
        if len(sizes) > 1:
            results[name]["marginal"] = marginal(results[name][str(sizes[0])], results[name][str(sizes[-1])])
    if {"command_run", "baseline"} <= set(sources):
        after, before = results["command_run"], results["baseline"]
        speedup = {f"{n}_wall": round(before[str(n)]["wall_s"] / after[str(n)]["wall_s"], 2) for n in sizes}
        if len(sizes) > 1:
            for kind in ("wall", "cpu"):
                key = f"{kind}_s_per_subject"
                speedup[f"marginal_{kind}"] = round(before["marginal"][key] / after["marginal"][key], 2)
        results["speedup"] = speedup
    if "simulate" not in args.skip:
        results["simulate"] = simulate_only(args, device)
    results["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
