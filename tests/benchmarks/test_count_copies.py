"""benchmarks/count_copies.py: copies counted by hand on tiny steps, and the count of medssl's own step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import count_copies  # noqa: E402


def test_each_copy_of_a_hand_counted_step_is_found_with_its_line_and_autograd_node() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    line = sys._getframe().f_lineno

    def step() -> None:
        y = x.double()  # a cast; its backward casts the gradient back (ToCopyBackward0)
        z = F.pad(y, (1, 1))  # writes y into the padded tensor; the backward clones the unpadded slice
        z.transpose(0, 1).contiguous().sum().backward()  # a transposed copy; its backward passes through

    copies = count_copies.copies_of(step)
    here = Path(__file__).resolve().relative_to(count_copies.REPO)
    got = sorted((c.phase, c.node, c.chain[-2], c.site) for c in copies)
    assert got == sorted([
        ("forward", "", "aten::_to_copy", f"{here}:{line + 3}"),
        ("forward", "", "aten::constant_pad_nd", f"{here}:{line + 4}"),
        ("forward", "", "aten::clone", f"{here}:{line + 5}"),
        ("backward", "ToCopyBackward0", "aten::_to_copy", f"{here}:{line + 3}"),  # traced to its forward line
        ("backward", "ConstantPadNdBackward0", "aten::clone", f"{here}:{line + 4}"),
    ])
    cast = next(c for c in copies if c.phase == "forward" and c.chain[-2] == "aten::_to_copy")
    assert (cast.src_dtype, cast.dst_dtype, cast.small_bytes()) == ("float", "double", 20 * 4 + 20 * 8)


def test_autocast_casts_are_told_from_other_copies() -> None:
    """A Linear under CPU autocast: input, weight and bias cast forward, the two parameter gradients
    cast back; the loss's own ``.float()`` is a cast of the code, not of autocast."""
    linear, x = nn.Linear(6, 3), torch.randn(2, 6)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = linear(x)
        out.float().sum().backward()

    kinds = [(count_copies.kind_of(c), c.phase) for c in count_copies.copies_of(step)]
    autocast = [phase for kind, phase in kinds if kind == "(a) autocast cast"]
    assert sorted(autocast) == ["backward"] * 2 + ["forward"] * 3
    assert ("other: cast", "forward") in kinds and ("other: cast", "backward") in kinds


def test_cuda_autocast_policy_keeps_max_pool_in_bf16_and_is_undone() -> None:
    x = torch.randn(1, 2, 6, 6, 6, dtype=torch.bfloat16)

    def pooled_dtype() -> torch.dtype:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.max_pool3d(x, 3, 2, 1).dtype

    assert pooled_dtype() == torch.float32  # CPU autocast's own list
    with count_copies.cuda_autocast_policy():
        assert pooled_dtype() == torch.bfloat16
    assert pooled_dtype() == torch.float32


def test_smoke_run_counts_the_step_and_scales_its_bytes(tmp_path: Path) -> None:
    out = tmp_path / "copies.json"
    assert count_copies.main(["--backbone", "tiny_cnn3d", "--subjects", "2", "--shape", "12", "12", "12",
                              "--full-subjects", "4", "--full-shape", "24", "24", "24", "--amp", "bf16",
                              "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device_copy_mb"] == round(4 * 24 ** 3 * 4 * 2 / 1e6, 1)  # the host batch, read and written
    run = report["runs"]["bf16"]
    assert run["summary"]["calls"] == sum(r["calls"] for r in run["rows"]) > 0
    assert any(r["kind"] == "(a) autocast cast" for r in run["rows"])
    assert any(r["kind"] == "(c) views" for r in run["rows"])


def test_small_grid_shapes_map_to_the_full_grid_through_the_meta_traces() -> None:
    mapping = count_copies.shape_map("tiny_cnn3d", (12, 12, 12), (24, 20, 16), subjects=2, full_subjects=4)
    assert mapping[(2, 1, 12, 12, 12)] == (4, 1, 24, 20, 16)  # a view
    assert mapping[(4, 1, 12, 12, 12)] == (8, 1, 24, 20, 16)  # both views, concatenated
    assert mapping[(2, 12, 12)] is None  # the per-axis matrices: one shape here, three at the full grid
