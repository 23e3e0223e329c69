"""Issue 5's reference point: a Quix Streams job doing PQL-like work (bench/quix_job.py) on the
embedded broker, with the same workload and the same raw baseline as `bench/run.py`.

    python -m bench.quix_bench [--events 200000] [--accounts 20000] [--reps 1]

Creates the quix venv (.venv/bench-quix, from bench/requirements-quix.txt) when missing or
stale, starts an embedded broker, preloads the workload, and per rep runs the job as a
subprocess (fresh consumer group, output topic and state dir) and then the raw baseline. Stops
everything it started on exit (Ctrl-C and errors included). Progress on stderr, a table on
stdout, JSON in bench/results/quix-<UTC timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ROOT, BenchError, Worker, guard, run_main, tail
from bench.run import Bench, say
from bench.workload import events_file
from streams.app.settings import FETCH_WAIT_MS
from streams.broker.embedded import EmbeddedBroker
from streams.io.produce import produce_file
from streams.io.topics import TopicSpec, ensure_topics

VENV = ROOT / ".venv" / "bench-quix"
REQUIREMENTS = ROOT / "bench" / "requirements-quix.txt"
JOB = ROOT / "bench" / "quix_job.py"
PARTITIONS = 4
IDLE_TIMEOUT_S = 30.0  # the job stops itself after this long without a new message
UNLIMITED_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}
STALL_S = 120.0  # no progress reported for this long: the run failed


def quix_python() -> Path:
    """The quix venv's python, creating or updating the venv when the requirements changed."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".bench-requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        say(f"creating the quix venv {VENV.relative_to(ROOT)} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    say(f"installing {REQUIREMENTS.relative_to(ROOT)} into it (a minute or two)")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS)], stdout=sys.stderr, check=False)
    if done.returncode != 0:
        raise BenchError(f"pip install -r {REQUIREMENTS} failed (exit {done.returncode})")
    stamp.write_text(wanted)
    say("quix venv ready")
    return python


def requirement_lines() -> list[str]:
    lines = (x.split("#", 1)[0].strip() for x in REQUIREMENTS.read_text().splitlines())
    return [x for x in lines if x]


class QuixJob(Worker):
    """bench/quix_job.py in the quix venv: own session, watchdog, stop() and check() as a
    worker's; its JSON progress lines on stdout are read by a thread."""

    def __init__(self, name: str, python: Path, args: list[str], log_path: Path) -> None:
        super().__init__(name, args, 0, log_path)
        self.python = python
        self.processed = 0
        self.last_report = 0.0
        self.done: dict[str, Any] | None = None
        self.peak_kib = 0
        self._reader: threading.Thread | None = None

    def start(self) -> QuixJob:
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [str(self.python), str(JOB), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
        self._watchdog = guard(self.proc.pid)
        _JOBS.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            self.last_report = time.monotonic()
            if rec.get("done"):
                self.done = rec
            self.processed = int(rec.get("processed", self.processed))

    cpu_first: tuple[int, float] | None = None  # (processed, CPU seconds) at the first report
    cpu_last: tuple[int, float] | None = None

    def events_per_cpu_second(self) -> int | None:
        if self.cpu_first is None or self.cpu_last is None:
            return None
        events = self.cpu_last[0] - self.cpu_first[0]
        cpu = self.cpu_last[1] - self.cpu_first[1]
        return round(events / cpu) if events > 0 and cpu > 0 else None

    def wait_done(self, timeout: float) -> dict[str, Any]:
        """The job's last line, once it exited; raises BenchError if it failed or stalled."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        next_say = time.monotonic() + 2
        seen, t_change = -1, time.monotonic()
        while self.proc.poll() is None:
            now = time.monotonic()
            self.peak_kib = max(self.peak_kib, self.peak_rss_kib())
            if self.processed != seen:
                seen, t_change = self.processed, now
                # CPU between its first and last progress reports (per CPU second figures).
                cpu = self.cpu_seconds()
                if self.cpu_first is None and seen > 0:
                    self.cpu_first = (seen, cpu)
                self.cpu_last = (seen, cpu)
            if now - t_change > STALL_S or now > deadline:
                raise BenchError(f"{self.name}: stuck at {seen:,} events:\n{tail(self.log_path)}")
            if now >= next_say:
                next_say = now + 2
                say(f"  processed {self.processed:,}")
            time.sleep(0.1)
        if self._reader is not None:
            self._reader.join(5)
        if self.done is None or self.proc.returncode != 0:
            raise BenchError(
                f"{self.name} exited with code {self.proc.returncode} after "
                f"{self.processed:,} events; last lines of {self.log_path}:\n{tail(self.log_path)}"
            )
        return self.done

    def stop(self, grace: float = 20.0) -> float:
        with contextlib.suppress(ValueError):
            _JOBS.remove(self)
        return super().stop(grace)


_JOBS: list[QuixJob] = []


def run_job(
    python: Path, bootstrap: str, topic: str, n: int, run_id: str, rep: int, workdir: Path
) -> dict[str, Any]:
    app_id = f"quix-{run_id}-r{rep}"
    out_topic = f"{app_id}-out"
    ensure_topics(bootstrap, [TopicSpec(out_topic, PARTITIONS)])
    state_dir = workdir / f"{app_id}-state"
    args = ["--broker", bootstrap, "--input-topic", topic, "--output-topic", out_topic]
    args += ["--group", app_id, "--state-dir", str(state_dir), "--events", str(n)]
    args += ["--idle-timeout", str(IDLE_TIMEOUT_S), "--fetch-wait-ms", str(FETCH_WAIT_MS)]
    job = QuixJob(f"quix-r{rep}", python, args, workdir / f"{app_id}.log").start()
    say(f"quix rep {rep}: job pid {job.pid} started (consumer group {app_id})")
    try:
        d = job.wait_done(timeout=1800)
    finally:
        job.stop()
    first, last, end = d["t_first"], d["t_last"], d["t_done"]
    processing = max(last - first, 1e-6)
    whole = max(end - first, 1e-6)
    out: dict[str, Any] = {
        "events": d["processed"],
        "seconds": round(processing, 2),
        "events_per_second": round(d["processed"] / processing),
        "seconds_with_final_checkpoint": round(whole, 2),
        "events_per_second_with_final_checkpoint": round(d["processed"] / whole),
        "start_to_first_event_s": round(first - job.started_at, 2),
        "transitions": d["transitions"],
        "events_per_cpu_second": job.events_per_cpu_second(),
        "peak_rss_mib": round(job.peak_kib / 1024, 1),
        "state_dir_bytes": _du(state_dir),
    }
    say(
        f"quix rep {rep}: {out['events']:,} events in {processing:.1f} s = "
        f"{out['events_per_second']:,}/s ({out['events_per_second_with_final_checkpoint']:,}/s "
        f"with the final checkpoint); {out['transitions']:,} transitions; "
        f"peak RSS {out['peak_rss_mib']} MiB"
    )
    shutil.rmtree(state_dir, ignore_errors=True)
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    python = quix_python()
    path, n, days = events_file(args.events, args.accounts, say)
    result: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "workload": {"file": str(path), "events": n, "accounts": args.accounts, "days": days},
        "quix": {"requirements": requirement_lines()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="pql-quix-bench-"))
    say(f"logs and state in {workdir}")
    broker = EmbeddedBroker()
    failed = True
    try:
        broker.start()
        say(f"embedded broker on {broker.bootstrap} (pid {broker.pid})")
        run_id = uuid.uuid4().hex[:6]
        topic = f"quix-{run_id}-events"
        # Quix reads the input topic's retention.ms to configure its changelog topic, and the
        # embedded broker describes only configs set explicitly: set them (it applies neither).
        ensure_topics(broker.bootstrap, [TopicSpec(topic, PARTITIONS, UNLIMITED_RETENTION)])
        say(f"preloading {n:,} events into {topic} ({PARTITIONS} partitions)")
        stats = produce_file(broker.bootstrap, [path], topic, PARTITIONS)
        say(f"preloaded in {stats.elapsed:.1f} s ({stats.rate:,.0f}/s)")
        baseline = Bench(args, broker, workdir).baseline
        jobs, bases = [], []
        for rep in range(1, args.reps + 1):
            jobs.append(run_job(python, broker.bootstrap, topic, n, run_id, rep, workdir))
            bases.append(baseline(topic, n))
        result["quix"]["reps"] = jobs
        result["baseline"] = {"reps": bases}
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        failed = False
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        try:
            for job in reversed(_JOBS):
                job.stop()
            broker.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if failed:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    quix = statistics.median(x["events_per_second"] for x in jobs)
    base = statistics.median(x["events_per_second"] for x in bases)
    result["summary"] = {
        "quix_events_per_second": quix,
        "quix_events_per_second_with_final_checkpoint": statistics.median(
            x["events_per_second_with_final_checkpoint"] for x in jobs
        ),
        "baseline_events_per_second": base,
        "quix_over_baseline": round(quix / base, 3),
    }
    return result


def table(r: dict[str, Any]) -> str:
    s, w = r["summary"], r["workload"]
    reps = len(r["quix"]["reps"])

    def each(rows: list[dict[str, Any]], key: str) -> str:
        return f"median of {reps}: " + ", ".join(f"{x[key]:,}" for x in rows)

    q, b = r["quix"]["reps"], r["baseline"]["reps"]
    rows = [
        (
            "quix job (1 process)",
            f"{s['quix_events_per_second']:,} ev/s",
            each(q, "events_per_second"),
        ),
        (
            "  incl. final checkpoint",
            f"{s['quix_events_per_second_with_final_checkpoint']:,} ev/s",
            each(q, "events_per_second_with_final_checkpoint"),
        ),
        (
            "raw baseline (consume+orjson)",
            f"{s['baseline_events_per_second']:,} ev/s",
            each(b, "events_per_second"),
        ),
        ("quix / baseline", f"{s['quix_over_baseline']:.3f}", ""),
        ("quix peak RSS", f"{max(x['peak_rss_mib'] for x in q)} MiB", "VmHWM, sampled"),
    ]
    w1 = max(len(x[0]) for x in rows)
    w2 = max(len(x[1]) for x in rows)
    head = (
        f"workload: {w['events']:,} events, {w['accounts']:,} accounts, {w['days']:g} simulated "
        f"days; embedded broker, {PARTITIONS} partitions; load average at start "
        f"{r['machine']['load_average_at_start']}, at end {r['load_average_at_end']}"
    )
    lines = [head, "", f"{'measure':<{w1}}  {'result':>{w2}}  notes", "-" * (w1 + w2 + 40)]
    return "\n".join(lines + [f"{x[0]:<{w1}}  {x[1]:>{w2}}  {x[2]}" for x in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quix_bench", description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args(argv)
    failures = (BenchError, subprocess.CalledProcessError)
    return run_main(lambda: run(args), table, say, prefix="quix-", failures=failures)


if __name__ == "__main__":
    sys.exit(main())
