"""The multi-process helpers fail fast and say why: a rank that raises, a rank that hangs, a command
that outlives its deadline (tests/multiproc.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
from multiproc import Commands, run_ranks


def _sum_of_ranks(rank: int, scale: float) -> torch.Tensor:
    value = torch.tensor([scale * (rank + 1)])
    torch.distributed.all_reduce(value)
    return value


def _rank1_raises(rank: int) -> None:
    if rank == 1:
        raise ValueError("rank 1 refuses")
    time.sleep(600)  # rank 0 would wait for ever: the parent stops it


def _rank1_hangs_in(rank: int, where: str) -> None:
    if rank == 1:
        time.sleep(600)  # stuck; `where` names this frame in the dumped stack


def test_ranks_meet_and_return_their_values(tmp_path: Path) -> None:
    out = run_ranks(_sum_of_ranks, 2, tmp_path, args=(2.0,))
    assert [float(v) for v in out] == [6.0, 6.0]  # 2 * 1 + 2 * 2 on both ranks


def test_a_rank_that_raises_fails_the_test_at_once_with_its_traceback(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failure:
        run_ranks(_rank1_raises, 2, tmp_path, timeout=200)
    message = str(failure.value)
    assert "rank 1 exited with code 1" in message and "ValueError: rank 1 refuses" in message
    assert time.monotonic() - start < 150  # not the deadline: the error was seen when rank 1 died


@pytest.mark.slow
def test_a_stuck_rank_prints_its_stack_and_fails(tmp_path: Path) -> None:
    """60 s: long enough for a spawned rank to start on a loaded machine and reach its stuck frame."""
    with pytest.raises(pytest.fail.Exception) as failure:
        run_ranks(_rank1_hangs_in, 2, tmp_path, args=("stuck",), timeout=200, stack_after=60)
    message = str(failure.value)
    assert "rank 1 exited with code 1" in message and "Timeout (0:00:" in message
    assert "in _rank1_hangs_in" in message  # the frame the rank was stuck in


def test_a_command_past_its_deadline_is_stopped_with_its_stacks(tmp_path: Path) -> None:
    commands = Commands(tmp_path)
    grandchild = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],\n"
              "                         stderr=subprocess.DEVNULL)  # its own stack dump elsewhere\n"
              f"open({str(grandchild)!r}, 'w').write(str(child.pid))\n"
              "print('started', flush=True)\n"
              "def waiting_for_ever():\n"
              "    time.sleep(600)\n"
              "waiting_for_ever()\n")
    commands.start("sleeper", [sys.executable, "-c", script])
    with pytest.raises(pytest.fail.Exception) as failure:
        commands.wait("sleeper", 8)
    message = str(failure.value)
    assert "'sleeper' did not finish within 8 s" in message and "started" in message
    assert "in waiting_for_ever" in message  # faulthandler's dump on SIGABRT
    pid = int(grandchild.read_text())
    with pytest.raises(ProcessLookupError):  # the whole process group went
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_a_failed_command_fails_with_its_output(tmp_path: Path) -> None:
    commands = Commands(tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)'bad' exited with code 3.*out of luck"):
        commands.run("bad", [sys.executable, "-c", "import sys; print('out of luck'); sys.exit(3)"], 60)
    commands.close()
