"""Every copy (``aten::copy_``) of one training step: where it comes from, what it moves (issue 18, target 3).

    python benchmarks/count_copies.py                  # resnet18_3d, 4 subjects of 1x32x40x32, CPU, ~30 s
    python benchmarks/count_copies.py --json out.json  # also the rows as JSON

The GPU profile (``gpu_bench.py``'s ``profile/<backbone>``) counts ``aten::copy_`` calls per step but not
their origin. This re-runs the same step, ``bench_steps.medssl_step`` (variant cl+s2d, y-aware views of
the batched augmenter, siamese + y-aware loss, fused Adam), once on the CPU at a small grid under
``torch.profiler``, with bf16 autocast and without, and names each copy:

- its call site: a ``TorchFunctionMode`` wraps every top-level torch call in a ``record_function``
  named after the innermost frame outside ``torch`` and the innermost medssl/benchmarks frame
  (file:line); a copy run by the backward is traced to the forward call that made its autograd node
  (the profiler's sequence numbers);
- its mechanism (``kind_of``): the aten operators above it (``aten::conv3d > aten::to > aten::_to_copy``
  is an autocast cast) and the layouts of its source and destination (strides);
- its bytes at the full grid, read + write: the small grid's shapes mapped to the full grid's by
  tracing the views, backbone and head forward + backward at both grids on the meta device (shapes
  only) and pairing the tensors they produce in order.

What a GPU would not run is kept apart as ``cpu-only``: Python scalars cast as 0-dim tensors and
mixed-dtype operands, which CPU kernels cast into temporaries and CUDA kernels cast on the fly. CPU
autocast runs max-pool and average pool in float32, CUDA autocast leaves them in bf16: by default
``cuda_autocast_policy`` makes CPU autocast do the same (``--cpu-autocast`` keeps CPU's list). Copies
inside CPU kernels (oneDNN's weight-gradient layouts, fused Adam's) may differ on CUDA. The batch's
host-to-device copy does not exist on the CPU; its bytes are reported as ``device_copy_mb``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_steps import Variant, augmenter, build_method, medssl_step  # noqa: E402

SITE = "@site "  # prefix of the record_function ranges that name a call site
REPO = Path(__file__).resolve().parents[1]
TORCH_DIR = str(Path(torch.__file__).resolve().parent)
AUTOCAST_OPS = {"aten::conv3d", "aten::conv2d", "aten::conv1d", "aten::convolution", "aten::linear",
                "aten::matmul", "aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm"}
# operators of the step that CPU autocast runs in float32 and CUDA autocast leaves in the activations' dtype
CPU_AUTOCAST_FP32 = ("max_pool3d", "adaptive_avg_pool3d")
DTYPE_BYTES = {"float": 4, "double": 8, "c10::BFloat16": 2, "c10::Half": 2, "long int": 8, "int": 4,
               "bool": 1, "unsigned char": 1, "signed char": 1}


def _short(path: str) -> str:
    """A frame's file relative to the repository (or to site-packages for libraries)."""
    p = str(Path(path).resolve())
    if p.startswith(str(REPO) + "/"):
        return p[len(str(REPO)) + 1:]
    return p.split("site-packages/")[-1]


def call_site() -> str:
    """``site|ours``: the innermost frame outside torch and this file, and the innermost one in medssl/
    or benchmarks/ (file:line each)."""
    site = ours = ""
    for frame in reversed(traceback.extract_stack()):
        path = str(Path(frame.filename).resolve())
        if path == str(Path(__file__).resolve()) or path.startswith(TORCH_DIR):
            continue
        here = f"{_short(path)}:{frame.lineno}"
        site = site or here
        if here.startswith(("medssl/", "benchmarks/")):
            ours = here
            break
    return f"{site}|{ours}"


class CallSites(TorchFunctionMode):
    """Wraps every top-level torch call in ``record_function(SITE + call_site())``; notes whether the
    call comes from ``torch.optim`` (the optimiser's step)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        stack = traceback.extract_stack(limit=12)
        optim = any("/torch/optim/" in f.filename for f in stack)
        with record_function(SITE + call_site() + ("|optim" if optim else "|")):
            return func(*args, **(kwargs or {}))


@dataclass
class Copy:
    """One ``aten::copy_``: its operators (outermost first), phase, call site and tensors."""

    chain: list[str]
    fchain: list[str]  # backward: the aten operators of the forward call that made its autograd node
    phase: str  # forward | backward | optimizer
    node: str  # the autograd node that ran it (backward), else ""
    site: str  # innermost frame outside torch
    ours: str  # innermost frame in medssl/ or benchmarks/
    dst_shape: list[int]
    src_shape: list[int]
    dst_dtype: str
    src_dtype: str
    dst_strides: list[int]
    src_strides: list[int]
    kind: str = ""
    full_bytes: int = 0
    exact: bool = True

    def small_bytes(self) -> int:
        return math.prod(self.dst_shape) * DTYPE_BYTES.get(self.dst_dtype, 4) + \
            math.prod(self.src_shape) * DTYPE_BYTES.get(self.src_dtype, 4)


def _site_of(event: Any) -> tuple[str, str, bool] | None:
    """The call site of the nearest enclosing ``@site`` range of ``event``."""
    p = event
    while p is not None:
        if p.name.startswith(SITE):
            site, ours, optim = p.name[len(SITE):].split("|")
            return site, ours, optim == "optim"
        p = p.cpu_parent
    return None


def copies_of(fn: Callable[[], Any]) -> list[Copy]:
    """The ``aten::copy_`` calls of one ``fn()``, each traced to its call site."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof, CallSites():
        fn()
    events = list(prof.events())
    in_backward: set[int] = set()
    forward_by_seq: dict[int, Any] = {}
    for e in sorted(events, key=lambda e: e.time_range.start):
        p, backward = e.cpu_parent, e.name.startswith("autograd::engine::evaluate_function")
        while p is not None and not backward:
            backward = id(p) in in_backward or p.name.startswith("autograd::engine::evaluate_function")
            p = p.cpu_parent
        if backward:
            in_backward.add(id(e))
        elif e.sequence_nr >= 0 and e.name.startswith("aten::"):
            # ops that make no autograd node record the next node's number too: the last one made it
            forward_by_seq[e.sequence_nr] = e
    out = []
    for e in events:
        if e.name != "aten::copy_":
            continue
        chain, node, p = [e.name], "", e.cpu_parent
        while p is not None:
            if p.name.startswith("autograd::engine::evaluate_function"):
                node = p.name.split(": ", 1)[-1]
                break
            if p.name.startswith(SITE):
                break
            if p.name.startswith("aten::"):
                chain.insert(0, p.name)
            p = p.cpu_parent
        origin, fchain = e, []
        if node and p is not None and p.sequence_nr in forward_by_seq:
            origin = forward_by_seq[p.sequence_nr]
            q = origin
            while q is not None and not q.name.startswith(SITE):
                if q.name.startswith("aten::"):
                    fchain.insert(0, q.name)
                q = q.cpu_parent
        site, ours, optim = _site_of(origin) or ("?", "?", False)
        phase = "optimizer" if optim else ("backward" if node else "forward")
        shapes, dtypes, strides = e.input_shapes, e.input_dtypes, e.structured_input_strides or [[], []]
        out.append(Copy(chain, fchain, phase, node, site, ours, list(shapes[0]), list(shapes[1]), dtypes[0], dtypes[1],
                        list(strides[0] or []), list(strides[1] or [])))
    return out


def _memory_format(shape: list[int], strides: list[int]) -> str:
    if len(shape) != 5 or not strides:
        return "other"
    t = torch.empty_strided(shape, strides, device="meta")
    if t.is_contiguous():
        return "contiguous" if not t.is_contiguous(memory_format=torch.channels_last_3d) else "either"
    return "channels_last_3d" if t.is_contiguous(memory_format=torch.channels_last_3d) else "strided"


def kind_of(c: Copy) -> str:
    """(a) autocast, (b) memory format, (c) views, (d) loss/head, (e) optimizer, (f) data (a device
    transfer: on a GPU only), backbone or other layout or cast, or cpu-only.

    cpu-only: Python scalars wrapped as 0-dim tensors and cast; mixed-dtype operands of elementwise
    kernels, which CPU TensorIterator casts into temporaries and CUDA kernels cast on the fly; and the
    casts of operators that only CPU autocast runs in float32 (``CPU_AUTOCAST_FP32``)."""
    if not c.dst_shape and not c.src_shape:
        return "cpu-only: scalar operand"
    if c.phase == "optimizer":
        return "(e) optimizer"
    top, ftop = c.chain[0], (c.fchain[0] if c.fchain else "")
    formats = {_memory_format(c.dst_shape, c.dst_strides), _memory_format(c.src_shape, c.src_strides)}
    if (top in ("aten::to", "aten::_to_copy") and not c.node and c.dst_dtype == c.src_dtype
            and c.dst_strides == c.src_strides):
        return "(f) data"  # a .to() that keeps dtype and layout moves the tensor to another device
    if c.dst_dtype != c.src_dtype:
        to_copy = c.node == "ToCopyBackward0"
        if top in AUTOCAST_OPS and c.chain[1:2] == ["aten::to"] or to_copy and ftop in AUTOCAST_OPS:
            return "(a) autocast cast"
        if {top, ftop} & {f"aten::{op}" for op in CPU_AUTOCAST_FP32}:
            return "cpu-only: CPU autocast fp32 op"
        if not to_copy and top not in ("aten::to", "aten::_to_copy"):
            return "cpu-only: mixed-dtype operand"
    elif formats == {"contiguous", "channels_last_3d"}:
        return "(b) memory format"
    if c.ours.startswith("medssl/transforms/"):
        return "(c) views"
    if c.ours.startswith(("medssl/losses/", "medssl/models/heads.py")):
        return "(d) loss/head"
    part = "backbone" if c.ours.startswith("medssl/models/") else "other"
    return f"{part}: cast" if c.dst_dtype != c.src_dtype else f"{part}: layout"


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """Inside, CPU autocast leaves ``CPU_AUTOCAST_FP32`` in the input's dtype, as CUDA autocast does (a
    fallthrough kernel over the AutocastCPU key, removed on exit)."""
    lib = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Overriding a previously registered kernel.*")
        warnings.filterwarnings("ignore", message=".*other operators may also be overridden.*")
        for op in CPU_AUTOCAST_FP32:
            lib.impl(op, torch.library.fallthrough_kernel, "AutocastCPU")
    try:
        yield
    finally:
        lib._destroy()


class ShapeTrace(TorchDispatchMode):
    """The shapes of every tensor each aten operator takes and returns, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        return out


def meta_shapes(backbone: str, subjects: int, shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Every tensor shape of the step's views, backbone and head, forward and backward, on the meta
    device in call order (the loss is left out: autocast has no meta backend)."""
    device = torch.device("meta")
    with torch.device(device):
        method = build_method(backbone).to(memory_format=torch.channels_last_3d)
    aug = augmenter(device)
    x = torch.empty(subjects, 1, *shape, device=device).contiguous(memory_format=torch.channels_last_3d)
    with ShapeTrace() as trace:
        views = [aug(x), aug(x)] if aug is not None else [x, x]
        method.head(method.backbone(torch.cat(views))).float().pow(2).sum().backward()
    return trace.shapes


def shape_map(backbone: str, small: tuple[int, int, int], full: tuple[int, int, int], subjects: int,
              full_subjects: int) -> dict[tuple[int, ...], tuple[int, ...] | None]:
    """Small-grid shape -> full-grid shape, from the two meta traces paired in order (None: ambiguous)."""
    a, b = meta_shapes(backbone, subjects, small), meta_shapes(backbone, full_subjects, full)
    if len(a) != len(b):
        raise RuntimeError(f"the meta traces differ in length ({len(a)} vs {len(b)}): "
                           "the step's ops depend on the grid")
    seen: dict[tuple[int, ...], set[tuple[int, ...]]] = defaultdict(set)
    for s, f in zip(a, b):
        seen[s].add(f)
    return {s: (next(iter(f)) if len(f) == 1 else None) for s, f in seen.items()}


def full_bytes(c: Copy, mapping: dict[tuple[int, ...], tuple[int, ...] | None], subjects: int,
               full_subjects: int) -> tuple[int, bool]:
    """Read + write bytes of ``c`` at the full grid, and whether the meta traces knew both shapes (else
    every dimension equal to ``subjects`` or twice it is scaled as a batch dimension: the loss's)."""
    total, exact = 0, True
    for shape, dtype in ((c.dst_shape, c.dst_dtype), (c.src_shape, c.src_dtype)):
        full = mapping.get(tuple(shape))
        if full is None:
            exact = exact and not shape
            full = tuple(n * full_subjects // subjects if n in (subjects, 2 * subjects) else n for n in shape)
        total += math.prod(full) * DTYPE_BYTES.get(dtype, 4)
    return total, exact


def step_copies(backbone: str, subjects: int, shape: tuple[int, int, int], amp: torch.dtype | None,
                fused_adam: bool, cuda_policy: bool = True, device: torch.device = torch.device("cpu")) -> list[Copy]:
    """The copies of one of ``medssl_step``'s steps (cl+s2d) on ``device``, after one warm-up step; on the
    CPU with ``cuda_policy``, autocast casts what CUDA autocast would (:func:`cuda_autocast_policy`)."""
    torch.manual_seed(0)
    with cuda_autocast_policy() if cuda_policy and device.type == "cpu" else contextlib.nullcontext():
        step = medssl_step(backbone, subjects, shape, device, variant=Variant(), amp=amp, fused_adam=fused_adam)
        copies = copies_of(step.run)
    for c in copies:
        c.kind = kind_of(c)
    return copies


def rows(copies: list[Copy]) -> list[dict[str, Any]]:
    """Copies grouped by kind, call site, operators, phase and autograd node: calls and full-grid MB
    (the shape shown is the group's largest)."""
    groups: dict[tuple[str, ...], list[Copy]] = defaultdict(list)
    for c in copies:
        op = ">".join(x.removeprefix("aten::") for x in c.chain[:-1]) or "copy_"
        if c.fchain:
            op += " of " + ">".join(x.removeprefix("aten::") for x in c.fchain)
        where = c.ours if c.site == c.ours or not c.site else f"{c.ours} ({c.site})"
        groups[(c.kind, where, op, c.phase, c.node)].append(c)
    out = []
    for (kind, where, op, phase, node), cs in groups.items():
        big = max(cs, key=lambda c: c.full_bytes)
        out.append({"kind": kind, "site": where, "op": op, "phase": phase, "node": node, "calls": len(cs),
                    "full_mb": round(sum(c.full_bytes for c in cs) / 1e6, 1), "exact": all(c.exact for c in cs),
                    "shape": big.src_shape, "dtypes": f"{big.src_dtype}->{big.dst_dtype}"})
    return sorted(out, key=lambda r: (r["kind"], -r["full_mb"], r["site"]))


def summary(copies: list[Copy]) -> dict[str, Any]:
    """Calls and full-grid MB per kind, in all and without the CPU-only kinds (what a GPU step runs)."""
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for c in copies:
        by_kind[c.kind][0] += 1
        by_kind[c.kind][1] += c.full_bytes / 1e6
    gpu = [c for c in copies if not c.kind.startswith("cpu-only")]
    return {"calls": len(copies), "full_mb": round(sum(c.full_bytes for c in copies) / 1e6, 1),
            "calls_not_cpu_only": len(gpu), "full_mb_not_cpu_only": round(sum(c.full_bytes for c in gpu) / 1e6, 1),
            "by_kind": {k: {"calls": int(v[0]), "full_mb": round(v[1], 1)} for k, v in sorted(by_kind.items())}}


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [("| kind | site (innermost frame outside medssl) | ops | phase (autograd node) | calls | MB at full grid "
              "| largest source (small grid), dtypes |"), "|---|---|---|---|---|---|---|"]
    for r in table:
        node = f" ({r['node']})" if r["node"] else ""
        mb = f"{r['full_mb']}" + ("" if r["exact"] else " (batch-scaled)")
        lines.append(f"| {r['kind']} | {r['site']} | {r['op']} | {r['phase']}{node} | {r['calls']} | {mb} | "
                     f"{r['shape']} {r['dtypes']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18_3d")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--shape", nargs=3, type=int, default=[32, 40, 32])
    ap.add_argument("--full-subjects", type=int, default=32)
    ap.add_argument("--full-shape", nargs=3, type=int, default=[121, 145, 121])
    ap.add_argument("--amp", choices=["bf16", "none", "both"], default="both")
    ap.add_argument("--foreach-adam", action="store_true",
                    help="Adam without fused kernels (default: fused, as on CUDA)")
    ap.add_argument("--cpu-autocast", action="store_true",
                    help="CPU autocast's own op lists (default: max-pool and average pool left in bf16, as on CUDA)")
    ap.add_argument("--device", default="cpu", help="cuda: the copies a GPU step really runs (give the full grid)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    small, full = tuple(args.shape), tuple(args.full_shape)
    mapping = shape_map(args.backbone, small, full, args.subjects, args.full_subjects)
    h2d = args.full_subjects * math.prod(full) * 4 * 2  # the batch's host-to-device copy (fp32), read + write
    report: dict[str, Any] = {"device": str(device), "backbone": args.backbone, "small": [args.subjects, 1, *small],
                              "full": [args.full_subjects, 1, *full], "variant": Variant().label(),
                              "fused_adam": not args.foreach_adam, "cuda_autocast_policy": not args.cpu_autocast,
                              "torch": torch.__version__,
                              "command": "python benchmarks/count_copies.py " + " ".join(argv or sys.argv[1:]),
                              "device_copy_mb": round(h2d / 1e6, 1), "runs": {}}
    for name, amp in (("bf16", torch.bfloat16), ("none", None)):
        if args.amp not in (name, "both"):
            continue
        copies = step_copies(args.backbone, args.subjects, small, amp, not args.foreach_adam, not args.cpu_autocast,
                             device)
        for c in copies:
            c.full_bytes, c.exact = full_bytes(c, mapping, args.subjects, args.full_subjects)
        table = rows(copies)
        report["runs"][name] = {"summary": summary(copies), "rows": table}
        extra = f" (+1 host-to-device copy on a GPU, {h2d / 1e6:.0f} MB)" if device.type == "cpu" else ""
        print(f"\n## autocast {name}: {len(copies)} copies on {device}{extra}\n")
        print(json.dumps(report["runs"][name]["summary"], indent=1))
        print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
