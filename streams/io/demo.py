"""`make demo`: the embedded broker, a worker, simulated traffic and a live view of transitions.

Why subprocesses of the `pql` CLI rather than calling the modules: the demo then exercises exactly
what a user runs, and it stays decoupled from the internals (the worker can change how it is built
without the demo noticing). The price is process management, which is what most of this file is:

- every child runs in its own session / process group, so a Ctrl-C in the terminal reaches only
  this process (which then stops the children in order), and stopping a child's group also stops
  anything it started (the `pql broker` command runs the Tansu binary as its own child);
- children stop in reverse start order (tail, produce, worker, broker): the worker must commit
  and close RocksDB while the broker is still up. SIGTERM first, SIGKILL after a timeout; every
  group is waited for until it is empty (Tansu takes ~7 s to exit on SIGTERM);
- the stop runs from `finally`, from `atexit`, and on SIGTERM; a second Ctrl-C while stopping
  skips the grace periods and kills;
- if a child dies early, the demo names it, prints the tail of its log (children log to files in
  a temp dir; only `pql tail` writes to the terminal) and exits non-zero.

Time is accelerated: the simulated events span weeks of *event time* (history), and `pql produce
--rate` paces them in *wall-clock time* so the whole history streams in `--pace` seconds. The
worker's windows follow event time, so accounts that went quiet drop out as the stream's time
passes, not as the wall clock does.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

import click

from streams.broker.child import free_port
from streams.io import simulate

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "examples" / "team-chat.yaml"
# How long each child gets between SIGTERM and SIGKILL: the worker flushes and commits, the
# broker needs ~7 s (measured, see the embedded-broker notes). The demo's state is thrown away
# (temp dir, in-memory broker), so a worker that hangs on shutdown is not waited for longer.
STOP_GRACE_S: dict[str, float] = {"tail": 5.0, "produce": 5.0, "worker": 20.0, "broker": 20.0}
LOG_TAIL_LINES = 30
TAIL_HEAD_START_S = 3.0


class DemoError(Exception):
    """A failure the user should see as one clear message (not a traceback)."""


class _Terminated(Exception):
    """Raised from the SIGTERM/SIGHUP handler so the `finally` clean-up runs like for Ctrl-C."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None  # None: writes to our terminal

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session=True: the child leads its own group


@dataclass
class Demo:
    """One run of the demo: its temp dir, its children, and how to stop them."""

    model: Path
    accounts: int
    days: float
    seed: int
    pace_s: float
    bad_ratio: float
    duration_s: float | None
    ready_timeout_s: float
    keep: bool
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)
    workdir: Path | None = None
    _stopped: bool = False
    _hurry: bool = False
    _failed: bool = False

    # -- output ----------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # -- children --------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # child output must reach logs/terminal as it happens
        if not self.out.isatty():
            # Piped (`make demo | tee`, tests): rich would assume 80 columns and cut the table.
            env.setdefault("COLUMNS", "140")
        return env

    def start(self, name: str, args: Sequence[str], to_terminal: bool = False) -> Child:
        """Start `pql ARGS` as `name`, in its own process group, logging to a file."""
        assert self.workdir is not None
        cmd = [sys.executable, "-m", "streams.cli", *args]
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=None if to_terminal else log,
                stderr=log,
                env=self._env(),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def log_tail(self, child: Child, lines: int = LOG_TAIL_LINES) -> str:
        if child.log_path is None or not child.log_path.exists():
            return "(no log)"
        text = child.log_path.read_text(errors="replace").rstrip().splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    def check_alive(self, *names: str) -> None:
        """Raise DemoError naming the first of these children that has exited."""
        for child in self.children:
            if names and child.name not in names:
                continue
            code = child.proc.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited early with code {code}; last lines of "
                    f"{child.log_path}:\n{self.log_tail(child)}"
                )

    # -- stopping --------------------------------------------------------------------------
    def _on_second_interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        if not self._hurry:
            self._hurry = True
            self.say("pql demo: killing the remaining processes now.")

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a reused pgid of another user
            return False
        return True

    def _signal_group(self, child: Child, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pgid, sig)

    def _stop_child(self, child: Child) -> None:
        """SIGTERM the child's group, wait for the whole group to be gone, SIGKILL if it won't."""
        was_running = child.proc.poll() is None or self._group_alive(child.pgid)
        if was_running:
            self._signal_group(child, signal.SIGTERM)
        t0 = time.monotonic()
        deadline = t0 + STOP_GRACE_S.get(child.name, 10.0)
        killed = False
        while True:
            child.proc.poll()  # reap the leader as soon as it exits
            if child.proc.returncode is not None and not self._group_alive(child.pgid):
                if was_running:
                    how = " (killed)" if killed else ""
                    self.say(
                        f"pql demo: {child.name} stopped{how} in {time.monotonic() - t0:.1f} s"
                    )
                return
            if not killed and (self._hurry or time.monotonic() > deadline):
                self._signal_group(child, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 5.0
            elif killed and time.monotonic() > deadline:
                self.say(f"pql demo: could not stop {child.name} (pid {child.proc.pid})")
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every child in reverse start order. Idempotent (finally, atexit, signals)."""
        # First of all: a further Ctrl-C / SIGTERM must not abort the stop half-way.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # ValueError: not the main thread (atexit and main() always are).
            with contextlib.suppress(ValueError):
                signal.signal(sig, self._on_second_interrupt)
        if self._stopped:
            return
        self._stopped = True
        try:
            running = [c for c in self.children if c.proc.poll() is None]
            if running:
                names = ", ".join(c.name for c in reversed(running))
                self.say(f"\npql demo: stopping {names} (Ctrl-C again to kill)...")
            for child in reversed(self.children):
                self._stop_child(child)
        finally:
            self._cleanup_workdir()

    def _cleanup_workdir(self) -> None:
        if self.workdir is None:
            return
        if self.keep or self._failed:
            self.say(f"pql demo: logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- waiting ---------------------------------------------------------------------------
    def _wait_for(
        self, what: str, ready: Callable[[], bool], timeout_s: float, watch: Sequence[str]
    ) -> None:
        """Poll `ready` until true, failing fast (with the log) if a watched child dies."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive(*watch)
            if ready():
                return
            if time.monotonic() > deadline:
                culprit = next(c for c in self.children if c.name == watch[-1])
                raise DemoError(
                    f"{what} not ready after {timeout_s:.0f} s; last lines of "
                    f"{culprit.log_path}:\n{self.log_tail(culprit)}"
                )
            time.sleep(0.25)

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - local URL
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> int:
        t0 = time.monotonic()
        if not self.model.is_file():
            raise DemoError(f"model file not found: {self.model}")
        self.workdir = Path(tempfile.mkdtemp(prefix="pql-demo-"))
        broker_port = free_port()
        web_port = free_port()
        while web_port == broker_port:
            web_port = free_port()
        broker_addr = f"127.0.0.1:{broker_port}"
        metrics = f"http://127.0.0.1:{web_port}/metrics"

        # Event time ends today at 00:00 UTC: the history looks recent, and is still
        # deterministic within a day.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=math.ceil(self.days))
        events_path = self.workdir / "events.jsonl"
        counts = simulate.write(
            events_path, self.accounts, self.days, self.seed, start, bad_ratio=self.bad_ratio
        )
        total = counts["events"] + counts["bad"]
        rate = max(20, math.ceil(total / max(self.pace_s, 1.0)))
        mix = simulate.plan_accounts(self.accounts, self.days, self.seed, start)
        personas = sorted({p.persona.value for p in mix})

        self.say("pql demo: real-time Product-Qualified Lead detection, on a simulated team chat")
        self.say(f"  model    {self.model}")
        self.say(f"  broker   {broker_addr} (embedded Tansu, in memory)")
        self.say(f"  metrics  {metrics}")
        self.say(
            f"  events   {counts['events']:,} events for {self.accounts} accounts over "
            f"{self.days:g} days of event time, plus {counts['bad']} malformed ones (-> DLQ)"
        )
        self.say(f"  personas {', '.join(personas)}")
        self.say(f"  pace     {rate}/s: the whole history streams in ~{total / rate:.0f} s")
        self.say(f"  logs     {self.workdir}")

        broker = self.start("broker", ["broker", "--port", str(broker_port)])
        self.say("pql demo: starting the broker...")
        self._wait_for("broker", lambda: self._port_open(broker_port), 30.0, ["broker"])

        data_dir = self.workdir / "worker-data"
        data_dir.mkdir()
        worker_args = ["worker", "--model", str(self.model), "--broker", broker_addr]
        worker_args += ["--data-dir", str(data_dir), "--web-port", str(web_port)]
        worker = self.start("worker", worker_args)
        self.say(
            f"pql demo: starting the worker (waiting for http://127.0.0.1:{web_port}/readyz)..."
        )
        readyz = f"http://127.0.0.1:{web_port}/readyz"
        self._wait_for(
            "worker", lambda: self._http_ok(readyz), self.ready_timeout_s, ["broker", "worker"]
        )
        self.say(f"pql demo: worker ready after {time.monotonic() - t0:.0f} s")

        tail = self.start("tail", ["tail", "--broker", broker_addr], to_terminal=True)
        self.say(
            "  processes " + ", ".join(f"{c.name} pid {c.proc.pid}" for c in (broker, worker, tail))
        )
        self.say("Transitions appear below as the worker detects them. Ctrl-C stops everything.\n")
        # Let the tail's consumer join before the first transition exists, in case it reads
        # from the latest offset (a join takes ~3 s on the embedded broker).
        time.sleep(TAIL_HEAD_START_S)
        self.check_alive("tail")
        produce = self.start(
            "produce", ["produce", "--broker", broker_addr, "--rate", str(rate), str(events_path)]
        )
        self.say(f"pql demo: streaming the events now (produce pid {produce.proc.pid})")

        produced = False
        while True:
            if self.duration_s is not None and time.monotonic() - t0 >= self.duration_s:
                self.say(f"\npql demo: --duration {self.duration_s:g} s reached.")
                return 0
            self.check_alive("broker", "worker")
            if not produced and produce.proc.poll() is not None:
                if produce.proc.returncode != 0:
                    self.check_alive("produce")
                produced = True
                self.say(
                    f"\npql demo: all {total:,} events produced after "
                    f"{time.monotonic() - t0:.0f} s; still showing transitions. Ctrl-C to stop."
                )
            code = tail.proc.poll()
            if code is not None:
                if code != 0:
                    self.check_alive("tail")
                return 0
            time.sleep(0.25)


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated()


@click.command()
@click.option("--model", type=click.Path(path_type=Path), default=DEFAULT_MODEL, show_default=True)
@click.option("--accounts", type=click.IntRange(min=1), default=40, show_default=True)
@click.option(
    "--days",
    type=click.FloatRange(min=1),
    default=40.0,
    show_default=True,
    help="Days of simulated event time (quiet accounts drop out after ~35).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--pace",
    "pace_s",
    type=click.FloatRange(min=1),
    default=90.0,
    show_default=True,
    help="Wall-clock seconds to stream the whole history in.",
)
@click.option("--bad-ratio", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop by itself after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--ready-timeout",
    "ready_timeout_s",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the worker's /readyz.",
)
@click.option("--keep", is_flag=True, help="Keep the temp dir (events, logs, worker state).")
def main(
    model: Path,
    accounts: int,
    days: float,
    seed: int,
    pace_s: float,
    bad_ratio: float,
    duration_s: float | None,
    ready_timeout_s: float,
    keep: bool,
) -> None:
    """Run the whole pipeline locally and show PQL transitions live. Ctrl-C stops it."""
    demo = Demo(
        model=model.resolve(),
        accounts=accounts,
        days=days,
        seed=seed,
        pace_s=pace_s,
        bad_ratio=bad_ratio,
        duration_s=duration_s,
        ready_timeout_s=ready_timeout_s,
        keep=keep,
    )
    atexit.register(demo.stop)
    # Explicitly: a shell that starts us in the background sets SIGINT to "ignore", which
    # Python would inherit, and then Ctrl-C / `kill -INT` would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)
    # A closed terminal would kill us without running `finally`/atexit, orphaning the children.
    signal.signal(signal.SIGHUP, _raise_terminated)
    code = 0
    try:
        code = demo.run()
    except (KeyboardInterrupt, _Terminated):
        code = 0  # Ctrl-C / SIGTERM is how the demo is meant to end
    except DemoError as exc:
        demo._failed = True
        demo.say(f"\npql demo: ERROR: {exc}")
        code = 1
    except BaseException:
        demo._failed = True
        raise
    finally:
        demo.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
