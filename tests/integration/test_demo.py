"""`make demo` end to end: real subprocesses (embedded broker, worker, produce, tail), a
transition on screen, and — the part users notice when it goes wrong — nothing left running
after Ctrl-C. The demo is started exactly as `make demo` does, with a smaller setting."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from streams.io.simulate import plan_accounts

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = 10
DAYS = 40
FIRST_TRANSITION_S = 90.0  # the issue asks for 60 s on an idle machine; CI runs tests alongside


class _Reader:
    """Collects a child's stdout lines on a thread, so waiting can have a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pred: Callable[[str], bool], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._q.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                return None
            self.lines.append(line)
            if pred(line):
                return line
        return None

    def drain(self, timeout: float) -> None:
        self.wait_for(lambda _line: False, timeout)


def _start_demo(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.io.demo", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,  # so the test can signal it alone, like a terminal would
    )


def _processes() -> list[tuple[int, int, str]]:
    out = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), parts[2]))
    return rows


def _leftovers(groups: set[int], markers: set[str]) -> list[str]:
    """Processes in one of the demo's process groups, or naming its broker port / temp dir."""
    me = os.getpid()
    return [
        f"{pid} {args}"
        for pid, pgid, args in _processes()
        if pid != me
        and "ps -eo" not in args
        and (pgid in groups or any(m in args for m in markers))
    ]


def _kill_groups(groups: set[int]) -> None:
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)


def test_demo_shows_a_transition_and_ctrl_c_leaves_nothing_behind() -> None:
    ids = {p.account_id for p in plan_accounts(accounts=ACCOUNTS, days=DAYS)}
    t0 = time.monotonic()
    demo = _start_demo(
        "--accounts", str(ACCOUNTS), "--days", str(DAYS), "--pace", "40", "--duration", "240"
    )
    reader = _Reader(demo)
    groups = {demo.pid}
    markers: set[str] = set()
    try:
        banner = reader.wait_for(lambda line: "Transitions appear below" in line, 150)
        assert banner is not None, "demo never got ready:\n" + "\n".join(reader.lines[-60:])
        text = "\n".join(reader.lines)
        pids = {name: int(pid) for name, pid in re.findall(r"(\w+) pid (\d+)", text)}
        assert {"broker", "worker", "tail"} <= set(pids), text
        groups |= set(pids.values())
        port = re.search(r"broker\s+(127\.0\.0\.1:\d+)", text)
        logs = re.search(r"logs\s+(\S+)", text)
        assert port and logs, text
        markers = {port.group(1), logs.group(1)}

        def is_transition(line: str) -> bool:
            if m := re.search(r"produce pid (\d+)", line):
                groups.add(int(m.group(1)))
            return not line.startswith("pql demo") and any(a in line for a in ids)

        first = reader.wait_for(is_transition, FIRST_TRANSITION_S - (time.monotonic() - t0))
        elapsed = time.monotonic() - t0
        assert first is not None, f"no transition within {FIRST_TRANSITION_S:.0f} s:\n" + "\n".join(
            reader.lines[-60:]
        )
        # A qualification shows the playbook's action: route, owner (from the example's
        # territory rule or its pool) and the respond-by deadline, beside the summary.
        action = re.compile(r" qualified .*(self_serve|sales_[a-z]+) -> \S+@example\.com, by 20")
        alert = reader.wait_for(lambda line: bool(action.search(line)), 90)
        assert alert is not None, "no qualification with its action:\n" + "\n".join(
            reader.lines[-60:]
        )
        assert demo.poll() is None  # still running: it is meant to run until Ctrl-C
        reader.drain(2.0)

        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=90)
        reader.drain(1.0)
        assert code == 0, "\n".join(reader.lines[-40:])
        assert any("stopping" in line for line in reader.lines)
        leftovers = _leftovers(groups, markers)
        assert leftovers == [], leftovers
        assert not Path(logs.group(1)).exists()  # temp dir removed after a clean stop
        print(f"first transition after {elapsed:.1f} s: {first}")
    finally:
        if demo.poll() is None:
            _kill_groups({demo.pid})
            demo.wait(timeout=10)
        _kill_groups(groups - {demo.pid})


def test_demo_reports_a_worker_that_cannot_start_and_stops_the_broker(tmp_path: Path) -> None:
    """A child dying early is named, its log tail shown, the rest stopped, exit non-zero. An
    invalid model makes the worker refuse to start (the worker's contract)."""
    bad_model = tmp_path / "broken.yaml"
    bad_model.write_text("name: broken\nversion: 1\nsignals: {x: {count: 1, window: nope}}\n")
    demo = _start_demo("--model", str(bad_model), "--accounts", "3", "--days", "2")
    reader = _Reader(demo)
    try:
        code = demo.wait(timeout=120)
        reader.drain(1.0)
        text = "\n".join(reader.lines)
        assert code == 1, text
        assert "worker exited early" in text, text
        assert "worker.log" in text
        port = re.search(r"broker\s+(127\.0\.0\.1:\d+)", text)
        assert port, text
        assert _leftovers({demo.pid}, {port.group(1)}) == []
        kept = re.search(r"logs kept in (\S+)", text)
        assert kept, text  # a failure keeps the logs for the user to read
        assert (Path(kept.group(1)) / "worker.log").is_file()
    finally:
        if demo.poll() is None:
            _kill_groups({demo.pid})
        if kept := re.search(r"logs kept in (\S+)", "\n".join(reader.lines)):
            shutil.rmtree(kept.group(1), ignore_errors=True)


def test_demo_without_a_model_fails_fast_and_starts_nothing(tmp_path: Path) -> None:
    demo = _start_demo("--model", str(tmp_path / "missing.yaml"), "--accounts", "3")
    out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 1, out
    assert "model file not found" in out
    assert "broker pid" not in out
