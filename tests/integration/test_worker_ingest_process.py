"""The ingest stage runs in a child process of the worker (`streams.app.ingest.process`): it goes
away with the worker however the worker ends, and the worker does not run on without it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.integration.worker_harness import (
    EXAMPLES,
    WorkerNames,
    WorkerProc,
    Workers,
    workers,  # noqa: F401 - fixture
)

MODEL = EXAMPLES / "team-chat.yaml"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids += [int(k) for k in text]
    return kids


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _start(pool: Workers, name: str) -> tuple[WorkerProc, int]:
    """A ready worker and the pid of its ingest process."""
    names = WorkerNames.unique(name)
    names.create_topics(pool.bootstrap)
    w = pool.start(MODEL, names)
    assert w.proc is not None
    pid = w.proc.pid
    kids = [k for k in _children(pid) if "streams.app.ingest.process" in _cmdline(k)]
    assert len(kids) == 1, f"expected one ingest process under worker {pid}, found {kids}"
    return w, kids[0]


def test_ingest_process_exits_when_the_worker_is_killed(workers: Workers) -> None:  # noqa: F811
    w, child = _start(workers, "ingest-orphan")
    assert w.proc is not None
    # SIGKILL the worker alone (not its process group): nothing of it may run on, consuming.
    os.kill(w.proc.pid, signal.SIGKILL)
    w.proc.wait(10)
    assert _wait(lambda: _gone(child), 15), f"ingest process {child} outlived its worker"


def test_worker_stops_when_its_ingest_process_dies(workers: Workers) -> None:  # noqa: F811
    w, child = _start(workers, "ingest-dies")
    os.kill(child, signal.SIGKILL)
    assert _wait(lambda: not w.running, 30), "the worker ran on without its ingest stage"
    assert w.returncode() != 0
    assert "the ingest process exited (code -9)" in w.log_path.read_text(), w.log_tail()
