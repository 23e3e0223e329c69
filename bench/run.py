"""`make bench`: throughput, latency, memory, state size, recovery and backtest of pql-streams on
the embedded broker or a real Apache Kafka broker, measured in one run (a benchmark, not a
test). See bench/README.md.

    python -m bench.run [--events 1000000] [--accounts 20000] [--reps 3] [--quick]
                        [--broker embedded|kafka]

Starts the broker (`--broker kafka`: single-node KRaft from Maven Central jars, needs Java and
Maven) and worker subprocesses itself and stops them all on exit (Ctrl-C
included). Prints progress to stderr, a table to stdout, and writes bench/results/<ts>.json.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench import recovery_scale
from bench.procs import ROOT, BenchError, Worker, run_main, stop_all
from bench.workload import events_file
from streams.app.settings import FETCH_WAIT_MS
from streams.broker.child import ChildBroker
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.broker.kafka import KafkaBroker
from streams.events.timestamps import iso_to_epoch_ms
from streams.io.kafka_config import consumer_config, producer_config
from streams.io.lag import consumer_group_lag
from streams.io.produce import EventKeyer, first_groups, produce_file, read_lines
from streams.io.topics import TopicSpec, ensure_topics

MODEL = ROOT / "examples" / "team-chat.yaml"
# The worker's defaults: --idle-timeout 3 s, then the 1 s idle hold (README "Time semantics").
IDLE_DRAIN_S = 3.0 + 1.0
PARTITIONS = 4
SETTLE_S = 3.0  # processed must stay unchanged this long after the input lag reached 0
STALL_S = 30.0  # ...and if it never reaches the backtest's count, this long
SEAL_MARK = b"pql-seal"

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def metric_sum(m: dict[str, float], name: str, must: str = "") -> float:
    return sum(v for k, v in m.items() if (k == name or k.startswith(name + "{")) and must in k)


# -- phases -------------------------------------------------------------------------------------


@dataclass
class Run:
    elapsed: float
    first: float
    last: float
    ingested: float | None
    processed: float
    cpu_seconds: float  # of the workers and their children, first consumed to last processed


class Bench:
    def __init__(self, args: argparse.Namespace, broker: ChildBroker, workdir: Path) -> None:
        self.args = args
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:6]
        self.worker_args: list[str] = []  # appended to every worker's arguments
        # When a dict: message_id -> (occurred_at, detected_at) of each transition the latency
        # phase matched (`bench.hops` follows them through the internal topics).
        self.trace: dict[str, tuple[float, float]] | None = None

    def worker(
        self, name: str, app_id: str, topics: tuple[str, str, str], data_dir: Path
    ) -> Worker:
        port = free_port()
        args = ["--model", str(MODEL), "--broker", self.bootstrap]
        args += ["--input-topic", topics[0], "--output-topic", topics[1], "--dlq-topic", topics[2]]
        args += ["--data-dir", str(data_dir), "--web-port", str(port), "--web-host", "127.0.0.1"]
        args += ["--app-id", app_id, "--partitions", str(PARTITIONS), "--session-timeout", "6"]
        args += ["--log-level", "warning", *self.worker_args]
        return Worker(name, args, port, self.workdir / f"{name}.log")

    # 1. sustained throughput ------------------------------------------------------------------
    def throughput(
        self, rep: int, input_topic: str, n: int, expected: int, keep: bool
    ) -> tuple[dict[str, Any], Worker | None]:
        """`expected`: deliveries `pql backtest` applies for the same events (parity)."""
        app_id = f"bench-{self.run_id}-tp{rep}"
        topics = (input_topic, f"{app_id}-out", f"{app_id}-dlq")
        data_dir = self.workdir / f"{app_id}-data"
        w = self.worker(f"tp{rep}", app_id, topics, data_dir).start()
        say(f"throughput rep {rep}: worker pid {w.pid} starting (app id {app_id})")
        ready_s = w.wait_ready()
        say(f"throughput rep {rep}: ready after {ready_s:.1f} s (cold start, empty state)")
        run = self.until_done([w], app_id, input_topic, n, expected)
        elapsed, t_first, t_change, t_ingested = run.elapsed, run.first, run.last, run.ingested
        last_processed = run.processed
        m = w.metrics()
        out: dict[str, Any] = {
            "events": n,
            "seconds": round(elapsed, 2),
            "events_per_second": round(n / elapsed),
            "cpu_seconds": round(run.cpu_seconds, 2),
            "events_per_cpu_second": round(n / run.cpu_seconds),
            "ingest_seconds": round((t_ingested or t_change) - t_first, 2),
            "deliveries_processed": int(last_processed),
            "deliveries_expected": expected,
            "transitions": int(metric_sum(m, "pql_transitions_total")),
            "cold_start_ready_s": round(ready_s, 2),
            "peak_rss_mib": round(w.peak_rss_kib() / 1024, 1),
            "state_accounts_metric": int(metric_sum(m, "pql_state_accounts")),
            "state_bytes_metric": int(metric_sum(m, "pql_state_bytes")),
            "rocksdb_dir_bytes": _du(data_dir),
        }
        out.update(self.changelog_state(f"{app_id}-state-accounts-changelog"))
        say(
            f"throughput rep {rep}: {n:,} events in {elapsed:.1f} s = "
            f"{out['events_per_second']:,}/s; peak RSS {out['peak_rss_mib']} MiB; "
            f"{out['transitions']:,} transitions"
        )
        if keep:
            return out, w
        w.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        return out, None

    def until_done(
        self, ws: list[Worker], app_id: str, input_topic: str, n: int, expected: int
    ) -> Run:
        """Poll the workers' summed metrics until they processed the workload: the input
        group's lag is 0 and processed reached `expected` and stayed there SETTLE_S."""
        t_first: float | None = None
        t_ingested: float | None = None
        cpu_first = cpu_last = 0.0
        last_processed = -1.0
        t_change = time.monotonic()
        next_lag = 0.0
        lag_zero = False
        next_say = time.monotonic() + 2
        while True:
            for w in ws:
                w.check()
            ms = [w.metrics() for w in ws]
            now = time.monotonic()
            consumed = sum(
                metric_sum(m, "pql_events_consumed_total", f'topic="{input_topic}"') for m in ms
            )
            processed = sum(metric_sum(m, "pql_events_processed_total") for m in ms)
            if t_first is None and consumed > 0:
                t_first = now
                cpu_first = sum(w.cpu_seconds() for w in ws)
            if t_ingested is None and consumed >= n:
                t_ingested = now
            if processed != last_processed:
                last_processed, t_change = processed, now
                cpu_last = sum(w.cpu_seconds() for w in ws)
            if consumed >= n and not lag_zero and now >= next_lag:
                next_lag = now + 1.0
                rows = consumer_group_lag(self.bootstrap, app_id, [input_topic])
                lag_zero = bool(rows) and all(r.lag == 0 for r in rows)
            stable_s = now - t_change
            if lag_zero and processed >= expected and stable_s >= SETTLE_S:
                break
            if lag_zero and stable_s >= STALL_S:
                say(
                    f"  WARNING: processed stopped at {processed:,.0f} < {expected:,} deliveries "
                    f"the backtest applied; taking the plateau as the end"
                )
                break
            if now >= next_say:
                next_say = now + 2
                rate = processed / (now - t_first) if t_first and now > t_first else 0
                say(f"  consumed {consumed:,.0f}/{n:,}  processed {processed:,.0f}  ~{rate:,.0f}/s")
            if stable_s > 120 and t_first is not None:
                raise BenchError(f"{app_id}: no progress for 120 s at {processed:,.0f}")
            time.sleep(0.1)
        assert t_first is not None
        # t_first/t_change are poll instants (0.1 s + scrape time): bounds within ~0.2 s.
        return Run(
            max(t_change - t_first, 1e-6),
            t_first,
            t_change,
            t_ingested,
            last_processed,
            max(cpu_last - cpu_first, 1e-6),
        )

    # 1b. scaling: several workers sharing the partitions -------------------------------------
    def scaling(self, input_topic: str, n: int, expected: int, count: int) -> dict[str, Any]:
        app_id = f"bench-{self.run_id}-scale{count}"
        topics = (input_topic, f"{app_id}-out", f"{app_id}-dlq")
        ws = [
            self.worker(f"scale{count}-{i}", app_id, topics, self.workdir / f"{app_id}-{i}")
            for i in range(count)
        ]
        for w in ws:
            w.start()
        try:
            for w in ws:
                w.wait_ready()
            say(f"scaling: {count} workers ready (app id {app_id})")
            run = self.until_done(ws, app_id, input_topic, n, expected)
            per_worker = [int(metric_sum(w.metrics(), "pql_events_processed_total")) for w in ws]
        finally:
            for w in ws:
                w.stop()
        rate = round(n / run.elapsed)
        say(f"scaling: {count} workers, {n:,} events in {run.elapsed:.1f} s = {rate:,}/s")
        return {
            "workers": count,
            "events": n,
            "seconds": round(run.elapsed, 2),
            "events_per_second": rate,
            "deliveries_processed": int(run.processed),
            "deliveries_per_worker": per_worker,
        }

    def changelog_state(self, topic: str) -> dict[str, Any]:
        """Latest value size per account in the accounts changelog (the encoded state)."""
        sizes: dict[bytes, int] = {}
        records = 0
        for m in _read_topic(self.bootstrap, topic):
            records += 1
            key = m.key() or b""
            if SEAL_MARK in key:
                continue
            v = m.value()
            if v:
                sizes[key] = len(v)
            else:
                sizes.pop(key, None)
        total = sum(sizes.values())
        return {
            "changelog_records": records,
            "state_accounts": len(sizes),
            "state_bytes_total": total,
            "state_bytes_per_account": round(total / len(sizes), 1) if sizes else None,
            "state_bytes_per_account_max": max(sizes.values()) if sizes else None,
        }

    # 4b. recovery -----------------------------------------------------------------------------
    def recovery(self, w: Worker) -> dict[str, Any]:
        data_dir = Path(w.args[w.args.index("--data-dir") + 1])
        w.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        say("recovery: worker stopped, data dir wiped; restarting")
        again = Worker(w.name + "-recovery", w.args, w.web_port, w.log_path).start()
        try:
            ready = again.wait_ready(timeout=900)
            m = again.metrics()
        finally:
            again.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
        say(f"recovery: ready after {ready:.1f} s")
        return {
            "ready_s": round(ready, 2),
            "state_accounts_metric_after": int(metric_sum(m, "pql_state_accounts")),
        }

    # 2. raw baseline --------------------------------------------------------------------------
    def baseline(self, topic: str, n: int) -> dict[str, Any]:
        c = Consumer(consumer_config(self.bootstrap, None) | {"fetch.max.bytes": 52428800})
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got = 0
        t_first = None
        loads = orjson.loads
        try:
            while got < n:
                msgs = c.consume(5000, 1.0)
                if t_first is None and msgs:
                    t_first = time.monotonic()
                for msg in msgs:
                    if msg.error() is None:
                        loads(msg.value())
                        got += 1
            elapsed = time.monotonic() - (t_first or time.monotonic())
        finally:
            c.close()
        rate = round(n / max(elapsed, 1e-6))
        say(
            f"baseline: confluent-kafka consume + orjson.loads {n:,} in {elapsed:.2f} s "
            f"= {rate:,}/s"
        )
        return {"events": n, "seconds": round(elapsed, 3), "events_per_second": rate}

    # 3. end-to-end latency --------------------------------------------------------------------
    def latency(
        self, rep: int, path: Path, rate: float, duration: float, keying: str = "account"
    ) -> dict[str, Any]:
        """`keying`: how the input is keyed — "account" (as `pql produce` does), "user" (by
        userId, as RudderStack and PostHog do) or "round-robin" (no key, as Segment's Kafka
        destination sends): the worker's event-time alignment then holds each event until
        every input partition has moved past it."""
        app_id = f"bench-{self.run_id}-lat{rep}-{keying}"
        topics = (f"{app_id}-in", f"{app_id}-out", f"{app_id}-dlq")
        ensure_topics(self.bootstrap, [TopicSpec(t, PARTITIONS) for t in topics])
        data_dir = self.workdir / f"{app_id}-data"
        need = int(rate * duration)
        lines = []
        for line in read_lines([path]):
            lines.append(line)
            if len(lines) >= need:
                break
        groups, expected = _first_groups_and_applied(lines)
        keyer = EventKeyer(groups)
        keys: list[str | None]
        if keying == "account":
            keys = [keyer.key(line)[0] for line in lines]
        elif keying == "user":
            keys = [_user_key(line) for line in lines]
        else:
            keys = [None] * len(lines)
        w = self.worker(f"lat{rep}-{keying}", app_id, topics, data_dir).start()
        try:
            w.wait_ready()
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            stop = threading.Event()
            reader = threading.Thread(
                target=_collect,
                args=(self.bootstrap, topics[1], seen, stop, self.trace),
                daemon=True,
            )
            reader.start()
            time.sleep(1.0)  # the reader is assigned (assign(), no group join)
            say(
                f"latency rep {rep}, keyed by {keying}: offering {rate:,.0f} ev/s for "
                f"{duration:.0f} s ({len(lines):,} events, event time = now)"
            )
            p = Producer(producer_config(self.bootstrap))
            start = time.monotonic()
            i = 0
            next_say = start + 5
            while i < len(lines):
                now = time.monotonic()
                due = min(len(lines), int((now - start) * rate) + 1)
                while i < due:
                    ev = orjson.loads(lines[i])
                    wall = time.time()
                    ev["timestamp"] = _iso(wall)
                    mid = ev.get("messageId")
                    part = i % PARTITIONS if keying == "round-robin" else None
                    _produce(p, topics[0], orjson.dumps(ev), keys[i], part)
                    if mid:
                        sent[mid] = wall
                    i += 1
                p.poll(0)
                if now >= next_say:
                    next_say = now + 5
                    w.check()
                    say(f"  sent {i:,}  transitions seen {len(seen):,}")
                time.sleep(0.001)
            p.flush(30)
            offered_s = time.monotonic() - start
            # Drain: until the worker processed every delivery of what was offered (a worker
            # that fell behind is waited for, up to 300 s).
            t_change, last = time.monotonic(), -1.0
            while time.monotonic() - start - offered_s < 300:
                w.check()
                m = w.metrics()
                consumed = metric_sum(m, "pql_events_consumed_total", f'topic="{topics[0]}"')
                processed = metric_sum(m, "pql_events_processed_total")
                if processed != last:
                    last, t_change = processed, time.monotonic()
                idle = time.monotonic() - t_change
                if consumed >= len(lines) and processed >= expected and idle >= 1.0:
                    break
                if consumed >= len(lines) and idle >= STALL_S:
                    say(f"  WARNING: processed stopped at {processed:,.0f} < {expected:,}")
                    break
                time.sleep(0.25)
            drained_s = time.monotonic() - start - offered_s
            stop.set()
            reader.join(10)
            peak = w.peak_rss_kib()
            stages = w.metrics()
        finally:
            w.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
        lat = sorted(seen[k] - sent[k] for k in seen if k in sent)
        out: dict[str, Any] = {
            "keying": keying,
            "offered_rate": rate,
            "achieved_rate": round(len(lines) / offered_s),
            "seconds": round(offered_s, 1),
            "events": len(lines),
            "transitions_matched": len(lat),
            "drain_seconds_after_last_event": round(drained_s, 1),
            # Caught up within a few seconds of the last event, or fell behind the offered load
            # (then the percentiles measure the backlog, not the pipeline). The last events
            # wait for the input partitions to turn idle (the idleness timeout, then the idle
            # hold) before stream time passes them: that part of the drain is not a backlog.
            "kept_up": drained_s < 5.0 + IDLE_DRAIN_S,
            "peak_rss_mib": round(peak / 1024, 1),
            # The worker's own view (histogram quantiles, bucket resolution): from the
            # by-account record's timestamp (when ingest forwarded the event) to the transition
            # being produced — the part of the latency the account stage adds.
            "worker_processing_p50_s": histogram_quantile(
                stages, "pql_processing_latency_seconds", 0.5
            ),
            "worker_processing_p99_s": histogram_quantile(
                stages, "pql_processing_latency_seconds", 0.99
            ),
        }
        if lat:
            out |= {
                "p50_s": round(_pct(lat, 50), 4),
                "p99_s": round(_pct(lat, 99), 4),
                "max_s": round(lat[-1], 4),
            }
        say(
            f"latency rep {rep} ({keying}): {len(lat):,} transitions; p50 {out.get('p50_s')} s, "
            f"p99 {out.get('p99_s')} s, max {out.get('max_s')} s; in the account stage "
            f"p50 <= {out['worker_processing_p50_s']} s, p99 <= {out['worker_processing_p99_s']} s"
        )
        return out


def histogram_quantile(m: dict[str, float], name: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile `q` of a Prometheus histogram."""
    buckets = sorted(
        (float(k.split('le="', 1)[1].split('"', 1)[0]), v)
        for k, v in m.items()
        if k.startswith(name + "_bucket{")
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    want = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= want)


def _epoch(iso: str) -> float:
    ms = iso_to_epoch_ms(iso)
    return ms / 1000 if ms is not None else float("nan")


def _iso(wall: float) -> str:
    ms = int(wall * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _pct(xs: list[float], p: float) -> float:
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def _first_groups_and_applied(lines: list[bytes]) -> tuple[dict[str, str], int]:
    """The keyer's look-ahead, and how many deliveries `pql backtest` applies for `lines`."""
    from streams.backtest.replay import run_backtest
    from streams.model.loader import load_model

    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as f:
        f.write(b"\n".join(lines))
        f.flush()
        applied = run_backtest(load_model(str(MODEL)), [f.name])["events_applied"]
        return first_groups([f.name]), int(applied)


def _produce(
    p: Producer, topic: str, value: bytes, key: str | None, partition: int | None = None
) -> None:
    kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
    while True:
        try:
            p.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:
            p.poll(0.05)


def _user_key(line: bytes) -> str | None:
    """userId, else anonymousId: how RudderStack keys what it sends to Kafka."""
    obj = orjson.loads(line)
    key = obj.get("userId") or obj.get("anonymousId")
    return key if isinstance(key, str) else None


def _collect(
    bootstrap: str,
    topic: str,
    seen: dict[str, float],
    stop: threading.Event,
    trace: dict[str, tuple[float, float]] | None = None,
) -> None:
    # The embedded broker answers a multi-partition fetch only after the full wait: a short
    # one, so the reader does not add up to librdkafka's default 500 ms to what it measures.
    c = Consumer(consumer_config(bootstrap, None, fetch_wait_ms=FETCH_WAIT_MS))
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    try:
        while not stop.is_set():
            # `consume(n, timeout)` returns only once n records came or the timeout passed:
            # wait for one, then take what is there (else up to 0.1 s would be measured too).
            got = c.consume(1, 0.1)
            if got:
                got += c.consume(499, 0)
            for m in got:
                if m.error() is not None:
                    continue
                now = time.time()
                t = orjson.loads(m.value())
                mid = t.get("message_id")
                if mid and mid not in seen:  # first delivery counts
                    seen[mid] = now
                    if trace is not None:
                        trace[mid] = (_epoch(t["occurred_at"]), _epoch(t["detected_at"]))
    finally:
        c.close()


def _read_topic(bootstrap: str, topic: str) -> Any:
    """Every record of every partition of `topic` (end = the fetch response's EOF)."""
    c = Consumer(consumer_config(bootstrap, None) | {"enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    pending = set(range(PARTITIONS))
    try:
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for m in c.consume(5000, 1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    continue
                yield m
    finally:
        c.close()


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# 5. backtest ------------------------------------------------------------------------------------


def backtest(path: Path, reps: int) -> dict[str, Any]:
    """bench/backtest_bench.py's measurement (lines read / wall s, median of `reps`) for each
    engine and process count, each in a process of its own: pure Python and the compiled core
    (`streams.native`), 1 process and one per core (`pql backtest --jobs`)."""
    cores = os.cpu_count() or 1
    runs: list[dict[str, Any]] = []
    combos = dict.fromkeys([("python", 1), ("compiled", 1), ("python", cores), ("compiled", cores)])
    for engine, jobs in combos:
        cmd = [sys.executable, str(ROOT / "bench" / "backtest_bench.py"), "--file", str(path)]
        cmd += ["--runs", str(reps), "--jobs", str(jobs)]
        env = {**os.environ, "PQL_ENGINE": engine}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            say(f"backtest ({engine}, {jobs} processes) failed:\n{done.stderr[-2000:]}")
            continue
        one = orjson.loads(done.stdout.strip().splitlines()[-1])
        runs.append(one)
        say(
            f"backtest, {engine}, {jobs} process(es): {one['events']:,} events, "
            f"{one['median_events_per_second']:,}/s (median of {reps})"
        )
    if not runs:
        raise BenchError("no backtest run succeeded")
    best = max(runs, key=lambda r: r["median_events_per_second"])
    return {
        "events": runs[0]["events"],
        "events_applied": runs[0]["events_applied"],
        "runs": runs,
        "median_events_per_second": best["median_events_per_second"],
        "best": {"engine": best["engine"], "jobs": best["jobs"]},
    }


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    path, n, days = events_file(args.events, args.accounts, say)
    result: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "workload": {
            "file": str(path),
            "events": n,
            "accounts": args.accounts,
            "simulated_days": days,
            "model": str(MODEL.relative_to(ROOT)),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    # First, while nothing else of ours runs; its count of applied deliveries is what the
    # worker's pql_events_processed_total must reach (the end of the throughput run).
    result["backtest"] = backtest(path, 1 if args.skip_backtest else args.reps)
    expected = result["backtest"]["events_applied"]
    if args.skip_backtest:
        del result["backtest"]
    workdir = Path(tempfile.mkdtemp(prefix="pql-bench-"))
    say(f"logs and worker data in {workdir}")
    broker = new_broker(args.broker)
    failed = True
    try:
        broker.start()
        say(f"{args.broker} broker on {broker.bootstrap} (pid {broker.pid})")
        b = Bench(args, broker, workdir)
        topic = f"bench-{b.run_id}-events"
        say(f"preloading {n:,} events into {topic} ({PARTITIONS} partitions)")
        if args.quix:  # Quix reads the topic's retention settings (the embedded broker has none)
            from bench.quix_bench import UNLIMITED_RETENTION

            ensure_topics(broker.bootstrap, [TopicSpec(topic, PARTITIONS, UNLIMITED_RETENTION)])
        stats = produce_file(broker.bootstrap, [path], topic, PARTITIONS)
        say(f"preloaded in {stats.elapsed:.1f} s ({stats.rate:,.0f}/s)")
        result["preload"] = {
            "seconds": round(stats.elapsed, 1),
            "events_per_second": round(stats.rate),
        }

        tps, bases = [], []
        keep: Worker | None = None
        for rep in range(1, args.reps + 1):
            last = rep == args.reps
            out, w = b.throughput(rep, topic, n, expected, keep=last and not args.skip_recovery)
            tps.append(out)
            if w is not None:
                keep = w
            bases.append(b.baseline(topic, n))
        result["throughput"] = {"reps": tps}
        result["baseline"] = {"reps": bases}
        if args.quix:  # the reference job, same topic, same run (its own consumer group)
            from bench import quix_bench

            python = quix_bench.quix_python()
            result["quix"] = {
                "reps": [
                    quix_bench.run_job(python, b.bootstrap, topic, n, b.run_id, rep, workdir)
                    for rep in range(1, args.reps + 1)
                ]
            }
        if args.scale_workers > 1:
            result["scaling"] = b.scaling(topic, n, expected, args.scale_workers)
        if keep is not None:
            source = f"bench-{b.run_id}-tp{args.reps}-state-accounts-changelog"
            result["recovery"] = b.recovery(keep) | {"accounts": tps[-1]["state_accounts"]}
            if args.recovery_accounts:
                states = recovery_scale.latest_states(_read_topic(b.bootstrap, source), SEAL_MARK)
                result["recovery_at_scale"] = recovery_scale.measure(
                    b, states, args.recovery_accounts, PARTITIONS, metric_sum, say
                )
        lats = [
            b.latency(r, path, args.latency_rate, args.latency_seconds)
            for r in range(1, args.latency_reps + 1)
        ]
        result["latency"] = {"reps": lats}
        # The same phase with the keyings real sources use (event-time alignment at work).
        result["latency_keyed"] = {
            keying: b.latency(1, path, args.latency_rate, args.latency_seconds, keying)
            for keying in args.latency_keyings
        }
        result["load_average_after_streaming"] = [round(x, 2) for x in os.getloadavg()]
        failed = False
    finally:
        # A second Ctrl-C must not abort the clean-up half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stop_all()
            broker.cleanup()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if failed:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["summary"] = summarize(result)
    return result


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    tp = median([x["events_per_second"] for x in r["throughput"]["reps"]])
    base = median([x["events_per_second"] for x in r["baseline"]["reps"]])
    lat = r["latency"]["reps"]
    s: dict[str, Any] = {
        "worker_events_per_second": tp,
        "worker_events_per_cpu_second": median(
            [x["events_per_cpu_second"] for x in r["throughput"]["reps"]]
        ),
        "baseline_events_per_second": base,
        "worker_over_baseline": round(tp / base, 3) if tp and base else None,
        "peak_rss_mib": max(x["peak_rss_mib"] for x in r["throughput"]["reps"] + lat),
        "state_bytes_per_account": r["throughput"]["reps"][-1]["state_bytes_per_account"],
        "state_accounts": r["throughput"]["reps"][-1]["state_accounts"],
        "e2e_p50_s": median([x["p50_s"] for x in lat if "p50_s" in x]),
        "e2e_p99_s": median([x["p99_s"] for x in lat if "p99_s" in x]),
        "e2e_kept_up": all(x["kept_up"] for x in lat),
        "e2e_max_s": max([x["max_s"] for x in lat if "max_s" in x], default=None),
    }
    for keying, x in r.get("latency_keyed", {}).items():
        tag = keying.replace("-", "_")
        s[f"e2e_p50_s_{tag}"] = x.get("p50_s")
        s[f"e2e_p99_s_{tag}"] = x.get("p99_s")
        s[f"e2e_kept_up_{tag}"] = x["kept_up"]
    if "scaling" in r:
        s["scaling_workers"] = r["scaling"]["workers"]
        s["scaling_events_per_second"] = r["scaling"]["events_per_second"]
    if "recovery" in r:
        s["recovery_s"] = r["recovery"]["ready_s"]
        s["recovery_accounts"] = r["recovery"]["accounts"]
        s["cold_start_s"] = median([x["cold_start_ready_s"] for x in r["throughput"]["reps"]])
    if "recovery_at_scale" in r:
        s["recovery_scale_s"] = r["recovery_at_scale"]["ready_s"]
        s["recovery_scale_accounts"] = r["recovery_at_scale"]["accounts"]
        s["recovery_scale_peak_rss_mib"] = r["recovery_at_scale"]["peak_rss_mib"]
    if "quix" in r:
        s["quix_events_per_second"] = median([x["events_per_second"] for x in r["quix"]["reps"]])
        cpu = [x["events_per_cpu_second"] for x in r["quix"]["reps"] if x["events_per_cpu_second"]]
        s["quix_events_per_cpu_second"] = median(cpu)
    if "backtest" in r:
        s["backtest_events_per_second"] = r["backtest"]["median_events_per_second"]
        s["backtest_runs"] = [
            (x["engine"].split(" ")[0], x["jobs"], x["median_events_per_second"])
            for x in r["backtest"]["runs"]
        ]
    return s


def table(r: dict[str, Any]) -> str:
    s = r["summary"]
    a = r["args"]
    reps = a["reps"]
    tp = [x["events_per_second"] for x in r["throughput"]["reps"]]
    base = [x["events_per_second"] for x in r["baseline"]["reps"]]
    w = r["workload"]
    matched = sum(x["transitions_matched"] for x in r["latency"]["reps"])

    def f(x: Any, unit: str = "") -> str:
        if x is None:
            return "n/a"
        if isinstance(x, float) and x < 100:
            return f"{x:.3g}{unit}"
        return f"{x:,.0f}{unit}"

    head = (
        f"workload: {w['events']:,} events, {w['accounts']:,} accounts, "
        f"{w['simulated_days']:g} simulated days, {w['model']}; {a.get('broker', 'embedded')} "
        "broker, "
        f"{PARTITIONS} partitions; load average at start "
        f"{r['machine']['load_average_at_start']}"
    )
    rows = [
        (
            "worker throughput (1 worker)",
            f(s["worker_events_per_second"], " ev/s"),
            f"median of {reps}: {', '.join(f'{x:,}' for x in tp)}",
        ),
        (
            "raw baseline (consume+orjson)",
            f(s["baseline_events_per_second"], " ev/s"),
            f"median of {reps}: {', '.join(f'{x:,}' for x in base)}",
        ),
        ("worker / baseline", f(s["worker_over_baseline"]), "target >= 0.3, stretch >= 0.6"),
        (
            "worker per CPU second",
            f(s["worker_events_per_cpu_second"], " ev/cpu-s"),
            "worker + ingest process CPU, first consumed to last processed",
        ),
    ]
    if "quix_events_per_second" in s:
        qcpu = s["quix_events_per_cpu_second"]
        ratio = s["worker_events_per_cpu_second"] / qcpu if qcpu else None
        wall = s["worker_events_per_second"] / s["quix_events_per_second"]
        rows += [
            (
                "Quix Streams job (same topic, same run)",
                f(s["quix_events_per_second"], " ev/s"),
                f"worker / Quix in wall time: {f(wall)}x",
            ),
            (
                "Quix job per CPU second",
                f(qcpu, " ev/cpu-s"),
                f"worker / Quix per CPU second: {f(ratio)}x (target >= 1)",
            ),
        ]
    if "scaling_workers" in s:
        rows.append(
            (
                f"throughput, {s['scaling_workers']} workers",
                f(s["scaling_events_per_second"], " ev/s"),
                "one app id, partitions shared; same machine",
            )
        )
    rows += [
        (
            f"e2e latency p50 @ {a['latency_rate']:,.0f} ev/s",
            f(s["e2e_p50_s"], " s"),
            f"{a['latency_seconds']:g} s offered, {matched:,} transitions matched",
        ),
        ("e2e latency p99", f(s["e2e_p99_s"], " s"), "target < 1 s"),
        (
            "e2e latency max",
            f(s["e2e_max_s"], " s"),
            "" if s["e2e_kept_up"] else "worker FELL BEHIND the offered load: backlog latency",
        ),
    ]
    for keying in r.get("latency_keyed", {}):
        tag = keying.replace("-", "_")
        rows.append(
            (
                f"e2e latency p50 / p99, keyed by {keying}",
                f"{f(s[f'e2e_p50_s_{tag}'], ' s')} / {f(s[f'e2e_p99_s_{tag}'], ' s')}",
                "target p99 < 0.5 s"
                + ("" if s[f"e2e_kept_up_{tag}"] else "; worker FELL BEHIND the offered load"),
            )
        )
    rows += [
        ("peak RSS (worker + children)", f(s["peak_rss_mib"], " MiB"), "VmHWM"),
        (
            "state per account",
            f(s["state_bytes_per_account"], " B"),
            f"{s['state_accounts']:,} accounts, from the changelog; target < 1024 B",
        ),
    ]
    if "recovery_s" in s:
        rows.append(
            (
                "recovery (wiped data dir)",
                f(s["recovery_s"], " s"),
                f"{s['recovery_accounts']:,} accounts; cold start with no state "
                f"{f(s['cold_start_s'], ' s')}",
            )
        )
    if "recovery_scale_s" in s:
        rows.append(
            (
                "recovery at scale (wiped)",
                f(s["recovery_scale_s"], " s"),
                f"{s['recovery_scale_accounts']:,} accounts from a synthesized changelog "
                f"(bench/recovery_scale.py); peak RSS {s['recovery_scale_peak_rss_mib']} MiB; "
                "target < 60 s",
            )
        )
    for engine, jobs, rate in s.get("backtest_runs", ()):
        rows.append(
            (
                f"pql backtest, {engine}, {jobs} process{'es' if jobs > 1 else ''}",
                f(rate, " ev/s"),
                f"median of {reps}; target >= 300k",
            )
        )
    w1 = max(len(x[0]) for x in rows)
    w2 = max(len(x[1]) for x in rows)
    lines = [head, "", f"{'measure':<{w1}}  {'result':>{w2}}  notes", "-" * (w1 + w2 + 40)]
    lines += [f"{x[0]:<{w1}}  {x[1]:>{w2}}  {x[2]}" for x in rows]
    return "\n".join(lines)


def new_broker(kind: str) -> ChildBroker:
    """The broker a bench run starts: the embedded one, or Apache Kafka (KRaft, one node)."""
    return KafkaBroker() if kind == "kafka" else EmbeddedBroker()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--events", type=int, default=None, help="events preloaded [1000000; quick 200000]"
    )
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument(
        "--broker",
        choices=["embedded", "kafka"],
        default="embedded",
        help="the embedded broker (Tansu) or Apache Kafka (Java and Maven) [embedded]",
    )
    ap.add_argument("--reps", type=int, default=None, help="repetitions [3; quick 1]")
    ap.add_argument("--quick", action="store_true", help="200k events, 1 rep, 20 s latency phase")
    ap.add_argument("--latency-rate", type=float, default=5000.0, help="offered ev/s [5000]")
    ap.add_argument("--latency-seconds", type=float, default=None, help="[60; quick 20]")
    ap.add_argument("--latency-reps", type=int, default=None, help="[1; the phase is long]")
    ap.add_argument(
        "--latency-keyings",
        type=lambda text: [k for k in text.split(",") if k],
        default=["user", "round-robin"],
        help="latency phase again with these keyings (user, round-robin) [user,round-robin]",
    )
    ap.add_argument(
        "--recovery-accounts",
        type=int,
        default=None,
        help="also recover this many accounts from a changelog synthesized from the throughput "
        "run's states (bench/recovery_scale.py) [1000000; quick 100000; 0: skip]",
    )
    ap.add_argument(
        "--scale-workers",
        type=int,
        default=2,
        help="also run the throughput phase with this many workers sharing the partitions "
        "[2; 0 or 1: skip]",
    )
    ap.add_argument("--skip-recovery", action="store_true")
    ap.add_argument("--skip-backtest", action="store_true")
    ap.add_argument(
        "--quix",
        action="store_true",
        help="also run the Quix Streams reference job (bench/quix_job.py) on the same topic, "
        "for wall time and events per CPU second side by side (creates .venv/bench-quix once)",
    )
    a = ap.parse_args(argv)
    a.events = a.events or (200_000 if a.quick else 1_000_000)
    a.reps = a.reps or (1 if a.quick else 3)
    a.latency_seconds = a.latency_seconds or (20.0 if a.quick else 60.0)
    a.latency_reps = a.latency_reps or 1
    if a.recovery_accounts is None:
        a.recovery_accounts = 100_000 if a.quick else 1_000_000
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: run(args), table, say)


if __name__ == "__main__":
    sys.exit(main())
