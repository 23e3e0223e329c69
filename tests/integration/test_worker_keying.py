"""Exact live results whatever the input keying (event-time alignment across input partitions).

The same simulated history (multi-user accounts; identify calls never name the account and
every sixth account's tracks do not either, so they take the user stage) is produced the ways
real sources key it:

- `user`: keyed by userId (RudderStack; PostHog's distinct_id),
- `round-robin`: no key, partition after partition (Segment's Kafka destination),
- `account`: keyed by the account, as `pql produce` does,
- `user-local` (live only): keyed by userId, with the worker told so (`--input-key user`: the
  ingest routes each partition's users itself),

each both **live** (produced while the worker runs) and as a **backlog** loaded before the
worker starts, with one input partition holding far more data than the others so it is read
behind them (and the others are paused for running ahead). Every run must give exactly the
transitions of `pql backtest` over the time-sorted history: the same ids and payloads apart
from `detected_at`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.app.ingest import partition_of
from streams.events.parse import parse_event
from streams.events.resolver import AccountResolver
from streams.events.types import Event
from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    TopicReader,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_duplicates_identical,
    assert_same_as_backtest,
    backtest,
    collect,
    diff_report,
    metric_samples,
    transition_key,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"
ACCOUNTS = 90
KEYINGS = ["user", "round-robin", "account"]
LIVE_KEYINGS = [*KEYINGS, "user-local"]
SOURCE_KEYING = {"user-local": "user"}
FILLER = 12_000  # extra events in input partition 0 of the backlog: it is read behind
CRASH_FILLER = 60_000


def history() -> list[dict[str, Any]]:
    return list(generate(accounts=ACCOUNTS, days=1.0, seed=23))


def filler(events: list[dict[str, Any]], n: int = FILLER) -> list[dict[str, Any]]:
    """Page views of one busy user, spread over the history's time span, all in partition 0
    (its user id and its account hash there): a hot partition read far behind the others."""
    user = next(
        f"hot-user-{i}" for i in range(1000) if partition_of(f"hot-user-{i}", PARTITIONS) == 0
    )
    account = next(
        f"hot-co-{i}" for i in range(1000) if partition_of(f"hot-co-{i}", PARTITIONS) == 0
    )
    stamps = sorted(e["timestamp"] for e in events if isinstance(e.get("timestamp"), str))
    first, last = stamps[0], stamps[-1]
    from streams.events.timestamps import iso_to_epoch_ms
    from streams.scoring.transitions import iso_ms

    t0, t1 = iso_to_epoch_ms(first), iso_to_epoch_ms(last)
    assert t0 is not None and t1 is not None
    step = (t1 - t0) // n
    return [
        {
            "type": "page",
            "name": "Docs",
            "userId": user,
            "context": {"groupId": account},
            "messageId": f"hot-{i}",
            "timestamp": iso_ms(t0 + i * step),
        }
        for i in range(n)
    ]


def time_sorted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history sorted by event time (stable); lines without a usable time keep their
    place relative to the line before them."""
    keyed = []
    last = -(2**62)
    for i, e in enumerate(events):
        parsed = parse_event(json.dumps(e).encode())
        if isinstance(parsed, Event):
            last = parsed.ts
        keyed.append((last, i, e))
    return [e for _, _, e in sorted(keyed, key=lambda k: (k[0], k[1]))]


def records(
    events: list[dict[str, Any]], keying: str, hot: int = 0
) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) for every event as a source keying `keying` sends it; the last
    `hot` events are the filler, always in partition 0."""
    resolver = AccountResolver()
    out = []
    body = events[: len(events) - hot]
    for i, e in enumerate(body):
        value = json.dumps(e, separators=(",", ":")).encode()
        key: str | None
        if keying == "user":
            key = e.get("userId") or e.get("anonymousId")
        elif keying == "account":
            parsed = parse_event(value)
            target = resolver.resolve(parsed) if isinstance(parsed, Event) else None
            key = target if isinstance(target, str) else e.get("userId")
        else:
            key = None
        part = partition_of(key, PARTITIONS) if isinstance(key, str) else i % PARTITIONS
        out.append((part, key.encode() if isinstance(key, str) else None, value))
    for e in events[len(events) - hot :]:
        out.append((0, None, json.dumps(e, separators=(",", ":")).encode()))
    return out


def produce_to(bootstrap: str, topic: str, recs: list[tuple[int, bytes | None, bytes]]) -> None:
    from confluent_kafka import Producer

    from streams.io.kafka_config import producer_config

    p = Producer(producer_config(bootstrap))
    for part, key, value in recs:
        while True:
            try:
                p.produce(topic, value=value, key=key, partition=part)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


@dataclass
class Run:
    keying: str
    names: WorkerNames
    worker: WorkerProc
    reader: TopicReader
    lines: int


def _start(ws: Workers, keying: str, mode: str) -> tuple[WorkerNames, WorkerProc]:
    names = WorkerNames.unique(f"key-{mode}-{keying}"[:24])
    names.create_topics(ws.bootstrap)
    # "user-local": keyed by user, and the worker told so (`--input-key user`: the ingest routes
    # each partition's users itself).
    extra = ["--input-key", "user"] if keying == "user-local" else []
    return names, ws.new(MODEL, names, name=f"{mode}-{keying}", extra_args=extra)


@pytest.fixture(scope="module")
def expected_live(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("keying-expected")
    path = write_jsonl(tmp / "sorted.jsonl", time_sorted(history()))
    return backtest(MODEL, path, out_dir=tmp)


@pytest.fixture(scope="module")
def live_runs(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    tmp = tmp_path_factory.mktemp("keying-live")
    events = history()
    ws = Workers(broker.bootstrap, tmp)
    try:
        started = {k: _start(ws, k, "live") for k in LIVE_KEYINGS}
        for _, w in started.values():
            w.start()
        for _, w in started.values():
            w.wait_ready()
        runs = {}
        for keying, (names, w) in started.items():
            recs = records(events, SOURCE_KEYING.get(keying, keying))
            produce_to(broker.bootstrap, names.input_topic, recs)
            runs[keying] = Run(keying, names, w, ws.reader(names.output_topic), len(recs))
        yield runs
    finally:
        ws.stop_all()


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    events = history()
    hot = filler(events)
    tmp = tmp_path_factory.mktemp("keying-backlog-expected")
    return events + hot, write_jsonl(tmp / "sorted.jsonl", time_sorted(events + hot))


@pytest.fixture(scope="module")
def backlog_runs(
    broker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    backlog: tuple[list[dict[str, Any]], Path],
) -> Iterator[dict[str, Run]]:
    tmp = tmp_path_factory.mktemp("keying-backlog")
    events, _ = backlog
    ws = Workers(broker.bootstrap, tmp)
    try:
        runs = {}
        for keying in KEYINGS:
            names, w = _start(ws, keying, "backlog")
            recs = records(events, keying, hot=FILLER)
            produce_to(broker.bootstrap, names.input_topic, recs)  # before the worker starts
            runs[keying] = Run(keying, names, w, ws.reader(names.output_topic), len(recs))
        for run in runs.values():
            run.worker.start()
        yield runs
    finally:
        ws.stop_all()


def _check(run: Run, expected: list[dict[str, Any]]) -> None:
    wait_consumed([run.worker], run.names.input_topic, run.lines, timeout=180)
    got = collect(run.reader, expected, timeout=90, settle=run.worker.settle)
    assert len(got) == len({t["transition_id"] for t in got}), "duplicates without a crash"
    assert_same_as_backtest(got, expected, run.keying)
    late = metric_samples(run.worker.metrics(), "pql_late_events_total")
    assert sum(late.values()) == 0, f"late events: {late}"


@pytest.mark.parametrize("keying", LIVE_KEYINGS)
def test_live_input_keyed_any_way_matches_the_backtest(
    keying: str, live_runs: dict[str, Run], expected_live: list[dict[str, Any]]
) -> None:
    accounts = {t["account_id"] for t in expected_live}
    assert len(accounts) >= 40 and len(expected_live) >= 150
    _check(live_runs[keying], expected_live)


@pytest.mark.parametrize("keying", KEYINGS)
def test_backlog_with_a_partition_far_behind_matches_the_backtest(
    keying: str,
    backlog_runs: dict[str, Run],
    backlog: tuple[list[dict[str, Any]], Path],
    tmp_path: Path,
) -> None:
    expected = backtest(MODEL, backlog[1], out_dir=tmp_path)
    run = backlog_runs[keying]
    _check(run, expected)
    # Once every input partition is idle, nothing stays held (idleness, then the idle hold of
    # each stage; the gauge refreshes every 0.5 s).
    deadline = time.monotonic() + 20
    while True:
        held = metric_samples(run.worker.metrics(), "pql_held_events")
        if sum(held.values()) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sum(held.values()) == 0, f"nothing may stay held at the end: {held}"


def test_the_unsorted_keyings_really_spread_accounts_over_partitions() -> None:
    """Guard for the tests above: with user and round-robin keying, many multi-user accounts
    have events in several input partitions (else they would prove nothing)."""
    events = history()
    for keying in ("user", "round-robin"):
        parts: dict[str, set[int]] = {}
        resolver = AccountResolver()
        for part, _key, value in records(events, keying):
            parsed = parse_event(value)
            if not isinstance(parsed, Event):
                continue
            account = resolver.resolve(parsed)
            if isinstance(account, str):
                parts.setdefault(account, set()).add(part)
        spread = sum(1 for p in parts.values() if len(p) > 1)
        assert spread >= 20, (keying, spread)


def test_crash_mid_catch_up_then_a_second_worker_joins(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Round-robin backlog with the hot partition: SIGKILL while catching up, restart on the
    same data dir, then a second worker joins mid-stream (a rebalance of every stage). The
    union of what was emitted is exactly the backtest's, and every re-emitted transition
    carries the same id and payload."""
    events = history()
    hot = filler(events, CRASH_FILLER)  # a longer catch-up: time to kill in the middle of it
    events += hot
    expected = backtest(
        MODEL, write_jsonl(tmp_path / "sorted.jsonl", time_sorted(events)), out_dir=tmp_path
    )
    names = WorkerNames.unique("key-crash")
    names.create_topics(workers.bootstrap)
    recs = records(events, "round-robin", hot=CRASH_FILLER)
    produce_to(workers.bootstrap, names.input_topic, recs)
    reader = workers.reader(names.output_topic)
    w1 = workers.new(MODEL, names, name="w1").start()
    w1.wait_ready()
    # Kill while the stages catch up: once a sixth of the input is applied.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        applied = sum(metric_samples(w1.metrics(), "pql_events_processed_total").values())
        if applied >= len(recs) // 6:
            break
        time.sleep(0.05)
    w1.kill()
    seen_before = len(reader.transitions())
    assert seen_before < len(expected), "the kill came after the catch-up: too late to prove"
    w1.start()
    w1.wait_ready()
    assert reader.wait_for(lambda r: len(r) > seen_before + 5, 90), "nothing after the restart"
    w2 = workers.new(MODEL, names, name="w2").start()
    w2.wait_ready()
    # (The ingest read and committed the whole input long before the kill: the catch-up is in
    # the stages, through the internal topics.)
    got = collect(reader, expected, timeout=180, settle=w1.settle, give_up_idle=20)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )
    assert_duplicates_identical(got)
    late = sum(sum(metric_samples(w.metrics(), "pql_late_events_total").values()) for w in (w1, w2))
    assert late == 0, f"late events: {late}"
