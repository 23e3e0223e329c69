"""The ingest stage (`streams.app.ingest`) in a child process of the worker.

Why a process: parsing, routing and re-encoding every input event is about a third of the
worker's CPU, and in a thread it held the same GIL as the account stage, so the two together
used one core. In its own process it runs on another core while the account stage scores.

What crosses the process boundary is small and one way, child -> worker, over a pipe: after
every poll the child offers a *cumulative* report (`IngestStats` and each input partition's
progress). A sender thread ships the latest one; reports skipped while the pipe was busy do not
matter, since each supersedes the last. The worker drains the pipe from a timer and turns the
report into its metrics. Records themselves never cross the pipe: they go through Kafka (the
internal topics), and so does stream time (marks, `streams.app.watermark`), which must stay in
order with the records.

Lifecycle: the worker starts the child before Faust and stops it (SIGTERM, then SIGKILL after a
timeout) on the way out. The child stops with its parent whatever happens to it: it asks Linux
for SIGTERM when the parent dies (PR_SET_PDEATHSIG), also checks its parent id after every poll,
and stops when the pipe breaks. On SIGTERM the child finishes the poll under way (its forwards
delivered, its offsets committed) and closes its clients. It ignores SIGINT: Ctrl-C reaches the
whole process group, and the worker decides when its ingest stops. If the child fails, it sends
the error and exits non-zero; the worker's health timer then stops the worker (`check`).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from streams.app.ingest.config import IngestConfig, IngestStats
from streams.app.ingest.stage import Ingest
from streams.app.watermark import NO_TIME, Progress
from streams.metrics import Metrics

log = logging.getLogger("streams.ingest")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Report:
    """One cumulative report of the child (picklable)."""

    stats: IngestStats
    progress: Progress  # of the input partitions read


@dataclass(frozen=True)
class Failed:
    error: str  # the child's traceback


class IngestProcess:
    """The worker's handle on its ingest child."""

    def __init__(
        self,
        config: IngestConfig,
        metrics: Metrics,
        log_level: str = "info",
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.log_level = log_level
        self.assigned: frozenset[int] = frozenset()  # input partitions the child reads
        self.failure: str | None = None
        self._last = IngestStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        # A fresh interpreter (not fork: the worker has threads, librdkafka's and Faust's, that
        # a fork would copy mid-flight; not multiprocessing's spawn, which adds a resource
        # tracker process): the config goes in on stdin, reports come back on a pipe.
        receive, send = os.pipe()
        cmd = [sys.executable, "-m", "streams.app.ingest.process"]
        cmd += [str(send), str(os.getpid()), self.log_level]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=(send,))
        os.close(send)  # the child holds the only writing end: EOF here means it is gone
        self._conn = Connection(receive, writable=False)
        assert self._proc.stdin is not None
        with self._proc.stdin as stdin:
            pickle.dump(self.config, stdin)
        log.info("ingest process started (pid %d)", self._proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait up to `timeout` for the poll under way to finish, then SIGKILL."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("ingest process did not stop within %.0f s: killing it", timeout)
                proc.kill()
                proc.wait(5)
        with contextlib.suppress(Exception):
            self.pump()  # its last report
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def check(self) -> None:
        """Apply the child's reports; raise if it failed or exited while the worker runs."""
        self.pump()
        proc = self._proc
        if self._stopping or proc is None:
            return
        code = proc.poll()
        if self.failure is not None or code is not None:
            detail = f"\n{self.failure}" if self.failure else ""
            raise RuntimeError(f"the ingest process exited (code {code}){detail}")

    # -- reports ------------------------------------------------------------------------------
    def pump(self) -> None:
        """Apply every report waiting in the pipe (never blocks)."""
        conn = self._conn
        if conn is None:
            return
        latest: Report | None = None
        try:
            while conn.poll():
                msg = conn.recv()
                if isinstance(msg, Report):
                    latest = msg
                elif isinstance(msg, Failed):
                    self.failure = msg.error
        except (EOFError, OSError):  # the child is gone; check() reports its exit code
            self._conn = None
            conn.close()
        if latest is not None:
            self.apply(latest)

    def apply(self, report: Report) -> None:
        """The child's cumulative numbers as the worker's metrics."""
        m = self.metrics
        topic = self.config.input_topic
        stats, last = report.stats, self._last
        if stats.consumed > last.consumed:
            m.events_consumed_total.labels(topic).inc(stats.consumed - last.consumed)
        for reason, n in stats.rejected.items():
            new = n - last.rejected.get(reason, 0)
            if new > 0:
                m.events_rejected_total.labels(reason).inc(new)
                m.dlq_produced_total.labels(reason).inc(new)
        for how, n in stats.adjusted.items():
            new = n - last.adjusted.get(how, 0)
            if new > 0:
                m.clock_skew_events_total.labels(how).inc(new)
        m.paused_partitions.set(len(stats.paused))
        if stats.committed_at > last.committed_at:
            m.mark_committed(stats.committed_at)
        # Each partition's latest event time is its stream-time progress (lag in seconds).
        for q, (latest, _, _) in report.progress.items():
            if latest != NO_TIME:
                m.record_event_time(topic, q, latest / 1000)
        for q in self.assigned - stats.assigned:
            m.forget_partition(topic, q)
        self.assigned = stats.assigned
        self._last = stats


# -- the child --------------------------------------------------------------------------------
class _Sender:
    """Ships the latest report from a thread, so a busy pipe never holds up polling."""

    def __init__(self, conn: Connection, on_broken: Any) -> None:
        self._conn = conn
        self._on_broken = on_broken
        self._cond = threading.Condition()
        self._latest: Report | Failed | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pql-ingest-report", daemon=True)
        self._thread.start()

    def offer(self, msg: Report | Failed) -> None:
        with self._cond:
            self._latest = msg
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._closed:
                    self._cond.wait()
                msg, self._latest = self._latest, None
                closed = self._closed
            if msg is not None:
                try:
                    self._conn.send(msg)
                except OSError:  # the worker is gone
                    self._on_broken()
                    return
            if closed:
                return


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM when the parent dies (Linux); exit now if it already has."""
    with contextlib.suppress(Exception):  # not Linux: the per-poll parent check remains
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(0)


def child_main(config: IngestConfig, conn: Connection, parent_pid: int, log_level: str) -> None:
    """The ingest process: run the stage until SIGTERM or the parent goes away."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops us, not Ctrl-C
    # SIGHUP to the worker's process group (a closed terminal, `kill -HUP -PGID`) means "read
    # the model again" to the worker, nothing to us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from streams.gc_tuning import tune_gc

    tune_gc()
    stats = IngestStats()
    ingest = Ingest(config, stats)
    sender = _Sender(conn, ingest.stop)
    signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    last: tuple[Any, ...] | None = None

    def report() -> None:
        nonlocal last
        if os.getppid() != parent_pid:
            ingest.stop()
            return
        progress = ingest.progress.snapshot(time.monotonic())
        key = (
            stats.consumed,
            stats.committed_at,
            stats.assigned,
            stats.paused,
            tuple(progress.items()),
        )
        if key != last:  # idle polls send nothing
            last = key
            copy = replace(stats, rejected=dict(stats.rejected), adjusted=dict(stats.adjusted))
            sender.offer(Report(copy, progress))

    code = 0
    try:
        ingest.run(after_poll=report)
    except BaseException:  # noqa: BLE001 - reported to the worker, which stops
        log.exception("ingest stage failed")
        sender.offer(Failed(traceback.format_exc()))
        code = 1
    finally:
        sender.close()
        conn.close()
    if code:
        raise SystemExit(code)


def main(argv: list[str]) -> None:
    """`python -m streams.app.ingest.process REPORT_FD PARENT_PID LOG_LEVEL`, the pickled
    `IngestConfig` on stdin (what `IngestProcess.start` runs)."""
    faulthandler.enable()  # a crash in native code prints its Python stacks to the worker's log
    fd, parent_pid, log_level = int(argv[0]), int(argv[1]), argv[2]
    config = pickle.load(sys.stdin.buffer)
    if not isinstance(config, IngestConfig):
        raise SystemExit(f"expected a pickled IngestConfig on stdin, got {type(config)}")
    child_main(config, Connection(fd, readable=False), parent_pid, log_level)


if __name__ == "__main__":
    # Through the module's own name: reports must pickle as streams.app.ingest.process.Report,
    # not __main__.Report, for the worker to read them.
    from streams.app.ingest.process import main as _main

    _main(sys.argv[1:])
