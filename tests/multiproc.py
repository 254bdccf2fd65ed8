"""Multi-process tests that cannot hang: every child has a deadline, a log, and shows why it failed.

Two helpers, importable from any test (``tests/`` is on ``sys.path`` through ``tests/conftest.py``):

- :func:`run_ranks` runs ``fn(rank, *args)`` in ``world`` gloo ranks. The ranks are started with the
  ``spawn`` start method (a fresh interpreter: ``fork`` from the threaded pytest process copies locks
  that other threads hold at that instant, e.g. tqdm's monitor lock, and a child that needs one waits
  forever, past every gloo timeout), meet through a ``FileStore`` in ``tmp_path`` (no port is chosen,
  so none can be taken by another process between its choice and its use), talk over the loopback
  interface (``GLOO_SOCKET_IFNAME``, no hostname lookup), and run collectives under a timeout. Each
  rank writes ``rank<r>.log``; a rank still running 15 s before the parent's deadline prints every
  thread's Python stack there (``faulthandler``) and exits. The parent fails the test as soon as one
  rank exits non-zero, or at ``timeout``, killing the others and quoting the logs' tails.
- :class:`Commands` (fixture ``commands``) starts CLI processes in their own session, with output to
  a file (a pipe nobody reads fills up and blocks the child). ``wait`` fails the test with the log's
  tail when the command fails or outlives its deadline; a stuck command first gets SIGABRT, so that
  every Python process of its group prints its stacks (``PYTHONFAULTHANDLER``), then SIGKILL. Every
  process group still running at the end of the test is killed.

Every multi-process test (the 8 that ``.ci/loop-multiproc`` lists: gloo ranks, torchrun, SIGKILL and
resume, DataLoader workers) passed 30 rounds in a row, one fresh pytest a round, on 2 shared cores (slowest
round 181 s; commit 27e5a27, 2026-12-05): ``bash .ci/loop-multiproc 30``. An earlier loop failed once in
its 11th round (torchrun's rank 1 aborted), which led to the barrier at the end of DDP pretraining.
"""

from __future__ import annotations

import datetime
import faulthandler
import multiprocessing
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

STACK_MARGIN_S = 15.0  # a stuck rank dumps its stacks this long before the parent's deadline


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a child's log (or a note that it wrote none)."""
    if not path.exists():
        return f"--- {path.name}: no log written ---"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join([f"--- last {len(text)} lines of {path} ---", *text])


def loopback_interface() -> str:
    """``lo`` on Linux, ``lo0`` on macOS."""
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo")


def _rank_main(fn: Callable[..., Any], rank: int, world: int, init_method: str, log: str,
               result: str, dump_at: float, collective_timeout_s: float,
               args: Sequence[Any]) -> None:
    """One rank: output to its log, a stack dump + exit at wall-clock time ``dump_at`` if still
    running, gloo up, ``fn``, result saved."""
    out = open(log, "w", buffering=1)  # noqa: SIM115 (open for the whole life of the process)
    os.dup2(out.fileno(), 1)  # C++ (gloo, c10d) writes to the fds, not to sys.stdout
    os.dup2(out.fileno(), 2)
    faulthandler.enable(file=out)  # a crash prints the stack too
    faulthandler.dump_traceback_later(max(dump_at - time.time(), 1.0), exit=True, file=out)
    os.environ["GLOO_SOCKET_IFNAME"] = loopback_interface()
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=collective_timeout_s))
    # every rank connected before fn: a rank whose fn returns at once and leaves could otherwise cut
    # off a peer still connecting ("Connection closed by peer", seen once in 30 runs)
    torch.distributed.barrier()
    try:
        value = fn(rank, *args)
    finally:
        torch.distributed.destroy_process_group()
    torch.save(value, result)
    faulthandler.cancel_dump_traceback_later()


def _exit_reason(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def run_ranks(fn: Callable[..., Any], world: int, tmp_path: Path, args: Sequence[Any] = (),
              timeout: float = 240.0, collective_timeout: float = 60.0,
              stack_after: float | None = None) -> list[Any]:
    """``[fn(0, *args), ..., fn(world - 1, *args)]``, each run in its own gloo rank (see the module).

    ``fn`` must be importable by name (a module-level function): the ranks are spawned. Its return
    value travels back through ``torch.save`` (tensors, lists, dicts). The default ``timeout`` stays
    below the suite's 300 s pytest-timeout, so this helper's message is the one shown. A rank still
    running ``stack_after`` seconds after this call (default ``timeout - 15``) dumps its stacks and
    exits.
    """
    tmp_path = Path(tmp_path)
    store = tmp_path / f"gloo-store-{uuid.uuid4().hex}"  # a FileStore needs a file not used before
    logs = [tmp_path / f"rank{r}.log" for r in range(world)]
    results = [tmp_path / f"rank{r}.result.pt" for r in range(world)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(
        fn, r, world, store.as_uri(), str(logs[r]), str(results[r]),
        time.time() + (timeout - STACK_MARGIN_S if stack_after is None else stack_after),
        collective_timeout, tuple(args))) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            failed = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
            if failed:
                reasons = "; ".join(f"rank {r} {_exit_reason(procs[r].exitcode)}" for r in failed)
                pytest.fail(f"{reasons} (the other ranks were stopped)\n"
                            + "\n".join(log_tail(path) for path in logs), pytrace=False)
            if all(p.exitcode == 0 for p in procs):
                break
            if time.monotonic() > deadline:
                stuck = [r for r, p in enumerate(procs) if p.exitcode is None]
                pytest.fail(f"rank(s) {stuck} did not finish within {timeout} s (a stuck rank prints its "
                            "stacks to its log)\n" + "\n".join(log_tail(path) for path in logs),
                            pytrace=False)
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.exitcode is None:
                p.kill()
            p.join(10)
    return [torch.load(path, weights_only=True) for path in results]


class Commands:
    """Processes started in their own session, output to ``<log_dir>/<name>.log``; see the module."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir, self.started = Path(log_dir), {}  # name -> Popen
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Start ``argv`` with environment ``env`` (default: this process's) plus
        ``PYTHONFAULTHANDLER=1``; cwd defaults to the log folder, so that a core file of an aborted
        process stays out of the checkout."""
        if name in self.started:
            raise ValueError(f"a command named {name!r} was already started")
        with self.log_path(name).open("wb") as log:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"},
                cwd=cwd or self.log_dir, start_new_session=True)
        self.started[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def wait(self, name: str, timeout: float, expect: int | None = 0) -> int:
        """Wait for command ``name``; fail the test with its log's tail if it outlives ``timeout``
        seconds or (``expect`` not None) its exit code differs from ``expect``."""
        proc = self.started[name]
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
            pytest.fail(f"{name!r} did not finish within {timeout} s; its process group was stopped "
                        f"(SIGABRT: Python stacks below, then SIGKILL)\n{log_tail(self.log_path(name), 80)}",
                        pytrace=False)
        if expect is not None and code != expect:
            pytest.fail(f"{name!r} {_exit_reason(code)} (expected {expect})\n"
                        f"{log_tail(self.log_path(name), 150)}", pytrace=False)  # a launcher's own
            # traceback can fill 40 lines; the child's error (or its faulthandler stack) is above it
        return code

    def run(self, name: str, argv: Sequence[str], timeout: float, **kw: Any) -> None:
        """Start ``argv`` and wait for it to succeed within ``timeout`` seconds."""
        self.start(name, argv, **kw)
        self.wait(name, timeout)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group of command ``name`` (the command and its children)."""
        try:
            os.killpg(self.started[name].pid, sig)
        except ProcessLookupError:  # the whole group has exited already
            pass

    def stop(self, name: str) -> None:
        """SIGABRT (stacks to the log), then SIGKILL, to the group of a command that is still running."""
        proc = self.started[name]
        if proc.poll() is not None:
            self.kill(name)  # its children may outlive it
            return
        self.kill(name, signal.SIGABRT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.kill(name)
        proc.wait(timeout=10)

    def close(self) -> None:
        """Kill every process group started here (the end of a test, passed or failed)."""
        for name, proc in self.started.items():
            self.kill(name)
            if proc.poll() is None:
                proc.wait(timeout=10)
