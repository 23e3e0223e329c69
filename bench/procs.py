"""Worker subprocesses for the benchmark: started in their own session (a terminal Ctrl-C reaches
only us, and we stop them in order), each guarded by the broker's watchdog (it stops the worker's
process group if this process dies without cleaning up: SIGKILL, OOM), stopped with SIGTERM to
the group, then SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.broker.child import start_watchdog, stop_watchdog

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STOP_GRACE_S = 20.0

_LIVE: list[Worker] = []


class BenchError(RuntimeError):
    pass


class Worker:
    """`python -m streams.cli worker ...` with its log in `log_path`."""

    def __init__(self, name: str, args: list[str], web_port: int, log_path: Path) -> None:
        self.name = name
        self.args = args
        self.web_port = web_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Worker:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        self._watchdog = guard(self.proc.pid)
        _LIVE.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"worker {self.name} exited with code {self.proc.returncode}; last lines of "
                f"{self.log_path}:\n{tail(self.log_path)}"
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:  # noqa: S310
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return int(e.code), b""
        except (urllib.error.URLError, OSError, ValueError):
            return 0, b""

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds from start() until /readyz answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if self.get("/readyz", 1.0)[0] == 200:
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                raise BenchError(
                    f"worker {self.name} not ready after {timeout:.0f} s:\n" + tail(self.log_path)
                )
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        code, body = self.get("/metrics")
        return parse_metrics(body) if code == 200 else {}

    def peak_rss_kib(self) -> int:
        """VmHWM of the worker and every descendant (KiB)."""
        return sum(_vmhwm(pid) for pid in [self.pid, *descendants(self.pid)])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of the worker and every live descendant."""
        return sum(cpu_seconds(pid) for pid in [self.pid, *descendants(self.pid)])

    def stop(self, grace: float = STOP_GRACE_S) -> float:
        """SIGTERM the group; wait; SIGKILL. Returns seconds it took."""
        t0 = time.monotonic()
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                _killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            _killpg(proc.pid, signal.SIGKILL)  # anything left in its group
        if self._watchdog is not None:
            stop_watchdog(self._watchdog)
            self._watchdog = None
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)
        return time.monotonic() - t0


def guard(pid: int) -> subprocess.Popen[bytes]:
    """The watchdog (its own session) that kills `pid`'s process group when this process goes
    away, even by SIGKILL."""
    return start_watchdog(pid)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(
    run: Callable[[], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    say: Callable[[str], None],
    prefix: str = "",
    failures: tuple[type[BaseException], ...] = (BenchError,),
) -> int:
    """A benchmark's `main`: Ctrl-C, SIGTERM and SIGHUP stop everything it started; the result
    is written to bench/results/<prefix><UTC timestamp>.json and printed as a table."""
    # Also when started with SIGINT ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        result = run()
    except KeyboardInterrupt:
        say("interrupted: everything it started is stopped")
        return 130
    except failures as e:
        say(f"failed: {e}")
        return 1
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{prefix}{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


def stop_all() -> None:
    for w in reversed(list(_LIVE)):
        w.stop()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _vmhwm(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for k in kids:
            out.append(int(k))
            todo.append(int(k))
    return out


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(body: bytes) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as exposed)."""
    out: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m:
            with contextlib.suppress(ValueError):
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
