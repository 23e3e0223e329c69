"""Where an event's end-to-end latency goes, hop by hop.

    python -m bench.hops [--keying user] [--seconds 20] [--rate 5000] [--worker-arg=--X=Y ...]

Runs one latency phase of `bench.run` (a fresh worker on the embedded broker, or on Apache Kafka
with `--broker kafka`; the workload's events produced paced with their timestamp rewritten to
the wall clock), then reads the worker's internal topics back and follows each matched
transition's event through them by messageId, using the broker timestamps their records got
when they were produced:

- produce -> ingest forward: until the ingest stage wrote the event into a frame;
- for events that went straight to the account stage: ingest forward -> transition detected
  (the account stage's fetch, then holding the event until stream time passes it);
- for events routed by the user stage: ingest forward -> user stage forward -> detected;
- detected -> read by the bench: the output hop.

It also prints, per 2 s of the phase, the end-to-end percentiles (latency that grows during a
phase means the worker is near saturation), and how old the stream time carried by each path's
frames in by-account partition 0 is when they are produced (`DIRECT`: the ingest's; a number:
that by-user partition's relay). Starts and stops its own broker and worker, like `bench.run`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from bench import run as bench_run
from bench.procs import run_main, stop_all
from bench.workload import events_file
from streams.app import wire
from streams.app.watermark import stream_time
from streams.events.codec import decode_event
from streams.events.parse import parse_event
from streams.events.types import Reject
from streams.io.kafka_config import consumer_config

say = bench_run.say


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def _read(bootstrap: str, topic: str, partitions: int) -> Iterator[Message]:
    c = Consumer(consumer_config(bootstrap, None, fetch_wait_ms=20))
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    idle = 0
    try:
        while idle < 20:  # 2 s without a record: the end
            got = c.consume(1000, 0.1)
            if not got:
                idle += 1
                continue
            idle = 0
            yield from (m for m in got if m.error() is None)
    finally:
        c.close()


def follow(bootstrap: str, app_id: str, partitions: int) -> tuple[dict[str, dict[str, float]], Any]:
    """messageId -> hop name -> broker timestamp (s); and partition 0's stream-time ages."""
    hops: dict[str, dict[str, float]] = {}
    for m in _read(bootstrap, f"{app_id}-by-user", partitions):
        frame = wire.decode(m.value() or b"")
        for _user, _q, _offset, _mark, raw in frame[0] if frame else []:
            ev = parse_event(raw)
            if not isinstance(ev, Reject):
                hops.setdefault(ev.message_id, {})["ingest->user"] = m.timestamp()[1] / 1000
    ages: dict[str, list[float]] = {}
    for m in _read(bootstrap, f"{app_id}-by-account", partitions):
        at = m.timestamp()[1] / 1000
        frame = wire.decode(m.value() or b"")
        if frame is None:
            continue
        items, times = frame
        for _account, _q, _pos, path, data in items:
            hop = "user->account" if path >= 0 else "ingest->account"
            hops.setdefault(decode_event(data).message_id, {})[hop] = at
        if m.partition() == 0:
            for path, progress in times.items():
                found = stream_time(progress)
                if found is not None and found[0] > 0:
                    name = "DIRECT" if path == wire.DIRECT else str(path)
                    ages.setdefault(name, []).append(at - found[0] / 1000)
    return hops, ages


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, _n, _days = events_file(args.events, args.accounts, say)
    opts = bench_run.parse_args(["--quick"])
    workdir = Path(tempfile.mkdtemp(prefix="pql-hops-"))
    broker = bench_run.new_broker(args.broker)
    try:
        broker.start()
        b = bench_run.Bench(opts, broker, workdir)
        b.worker_args = list(args.worker_arg)
        b.trace = {}
        out = b.latency(1, path, args.rate, args.seconds, args.keying)
        app_id = f"bench-{b.run_id}-lat1-{args.keying}"
        say("reading the internal topics back")
        hops, ages = follow(broker.bootstrap, app_id, bench_run.PARTITIONS)
        trace = b.trace
    finally:
        stop_all()
        broker.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    rows: dict[str, list[float]] = {}
    timeline: dict[int, list[float]] = {}
    # The bench's own view: sent -> seen; here occurred (= sent) -> detected, and seen from it.
    first = min((o for o, _ in trace.values()), default=0.0)
    for mid, (occurred, detected) in trace.items():
        h = hops.get(mid, {})
        rows.setdefault("occurred -> detected (in the worker)", []).append(detected - occurred)
        timeline.setdefault(int(occurred - first) // 2 * 2, []).append(detected - occurred)
        if "ingest->account" in h:
            rows.setdefault("direct: produce -> ingest forward", []).append(
                h["ingest->account"] - occurred
            )
            rows.setdefault("direct: ingest forward -> detected", []).append(
                detected - h["ingest->account"]
            )
        if "ingest->user" in h:
            rows.setdefault("via user stage: produce -> ingest forward", []).append(
                h["ingest->user"] - occurred
            )
            if "user->account" in h:
                rows.setdefault("via user stage: ingest -> user stage forward", []).append(
                    h["user->account"] - h["ingest->user"]
                )
                rows.setdefault("via user stage: user stage forward -> detected", []).append(
                    detected - h["user->account"]
                )

    def summary(xs: list[float]) -> dict[str, float]:
        return {"n": len(xs), "p50": _pct(xs, 0.5), "p90": _pct(xs, 0.9), "p99": _pct(xs, 0.99)}

    return {
        "args": vars(args),
        "phase": out,
        "hops": {name: summary(xs) for name, xs in rows.items()},
        "timeline": {t: summary(xs) for t, xs in sorted(timeline.items())},
        "stream_time_age": {path: summary(xs) for path, xs in sorted(ages.items())},
    }


def table(r: dict[str, Any]) -> str:
    ph = r["phase"]
    lines = [
        f"keyed by {ph['keying']}, {ph['offered_rate']:,.0f} ev/s for {ph['seconds']} s: "
        f"e2e p50 {ph.get('p50_s')} s, p99 {ph.get('p99_s')} s, "
        f"{ph['transitions_matched']:,} transitions",
        "",
        f"{'hop':50} {'n':>6} {'p50':>7} {'p90':>7} {'p99':>7}",
    ]
    for name, x in r["hops"].items():
        lines.append(f"{name:50} {x['n']:6d} {x['p50']:7.3f} {x['p90']:7.3f} {x['p99']:7.3f}")
    lines += ["", "in the worker, by 2 s of the phase (when the event occurred):"]
    for t, x in r["timeline"].items():
        lines.append(f"  {t:3d} s  n={x['n']:5d}  p50 {x['p50']:.3f}  p99 {x['p99']:.3f}")
    lines += ["", "age of the stream time in by-account partition 0's frames, by path (p50):"]
    for path, x in r["stream_time_age"].items():
        lines.append(f"  {path:7} {x['n']:6d} frames  p50 {x['p50']:.3f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__.split("\n\n")[0])
    ap.add_argument("--keying", choices=["account", "user", "round-robin"], default="user")
    ap.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--events", type=int, default=200_000, help="workload size [200000]")
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="an extra worker argument (repeat; e.g. --worker-arg=--flush-interval=0.5)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: measure(args), table, say, prefix="hops-")


if __name__ == "__main__":
    sys.exit(main())
