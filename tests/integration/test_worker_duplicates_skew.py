"""Re-delivered events and wrong device clocks, against the real broker and worker.

- At-least-once input: every third event is delivered twice (same messageId, as a retrying CDP
  does), keyed by userId. The worker and `pql backtest` both count each event once: their
  transitions equal the backtest of the history without the duplicates, and the worker counts
  the duplicates it skipped.
- One `track` from a device whose clock is five years ahead (its `receivedAt` sane, as CDPs
  stamp it) is clamped to `receivedAt`: its account's clock does not jump, its later events
  are not rejected, and the transitions equal the backtest's. One without `receivedAt` is
  dead-lettered as `future_timestamp`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.events.parse import parse_event
from streams.events.types import Event
from streams.io.simulate import generate
from tests.integration.test_worker_keying import produce_to, records, time_sorted
from tests.integration.worker_harness import (
    EXAMPLES,
    TopicReader,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_same_as_backtest,
    backtest,
    collect,
    metric_samples,
    transition_key,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"


def _with_duplicates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(events):
        out.append(e)
        if i % 3 == 0:
            out.append(dict(e))  # the same event again, right after (a retried delivery)
    return out


def _skewed(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The history with one track of a qualifying account moved five years ahead (with a sane
    receivedAt), and one future track without receivedAt; the skewed account's id."""
    out = [dict(e) for e in events]
    for e in out:
        if e.get("type") == "track" and (e.get("context") or {}).get("groupId"):
            account = e["context"]["groupId"]
            e["receivedAt"] = e["timestamp"]
            e["timestamp"] = "2031" + e["timestamp"][4:]
            break
    else:
        raise AssertionError("no track naming its account")
    future = {
        "type": "track",
        "event": "Message Sent",
        "userId": "clockless",
        "context": {"groupId": "clockless-co"},
        "messageId": "no-received-at",
        "timestamp": "2031-01-01T00:00:00.000Z",
    }
    out.insert(len(out) // 2, future)
    return out, account


def _run(ws: Workers, tag: str, produced: list[dict[str, Any]]) -> tuple[WorkerProc, TopicReader]:
    """A worker fed `produced`, keyed by userId, once it is ready; back when all is read."""
    names = WorkerNames.unique(tag)
    names.create_topics(ws.bootstrap)
    w = ws.start(MODEL, names, name=tag)
    reader = ws.reader(names.output_topic)
    recs = records(produced, "user")
    produce_to(ws.bootstrap, names.input_topic, recs)
    wait_consumed([w], names.input_topic, len(recs), timeout=120)
    return w, reader


def test_redelivered_events_count_once(workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    events = list(generate(accounts=40, days=1.0, seed=31))
    doubled = _with_duplicates(events)
    duplicates = len(doubled) - len(events)
    clean = backtest(
        MODEL, write_jsonl(tmp_path / "clean.jsonl", time_sorted(events)), out_dir=tmp_path
    )
    again = backtest(
        MODEL, write_jsonl(tmp_path / "doubled.jsonl", time_sorted(doubled)), out_dir=tmp_path
    )
    assert {transition_key(t) for t in again} == {transition_key(t) for t in clean}
    assert len(clean) >= 40

    w, reader = _run(workers, "dups", doubled)
    got = collect(reader, clean, timeout=60, settle=w.settle)
    assert_same_as_backtest(got, clean)
    skipped = sum(metric_samples(w.metrics(), "pql_duplicate_events_total").values())
    # Duplicates of events that changed nothing (absorbed identify calls, ...) are harmless
    # and not remembered; most duplicates are skipped.
    assert duplicates * 0.5 <= skipped <= duplicates, (skipped, duplicates)


def test_a_wrong_device_clock_does_not_wreck_its_account(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    events = list(generate(accounts=40, days=1.0, seed=37))
    skewed, account = _skewed(events)
    expected = backtest(
        MODEL, write_jsonl(tmp_path / "skewed.jsonl", time_sorted(skewed)), out_dir=tmp_path
    )
    assert any(t["account_id"] == account and t["kind"] == "qualified" for t in expected), (
        "the skewed account must still qualify"
    )
    w, reader = _run(workers, "skew", skewed)
    got = collect(reader, expected, timeout=60, settle=w.settle)
    assert_same_as_backtest(got, expected)
    metrics = w.metrics()
    assert metric_samples(metrics, "pql_clock_skew_events_total") == {'{outcome="clamped"}': 1.0}
    rejected = metric_samples(metrics, "pql_events_rejected_total")
    assert rejected.get('{reason="future_timestamp"}') == 1.0, rejected
    assert sum(metric_samples(metrics, "pql_late_events_total").values()) == 0
    # The clamped event sits at its receivedAt in the time-sorted history the backtest read.
    clamped = next(
        e for e in skewed if e.get("receivedAt") and isinstance(parse_event(json.dumps(e)), Event)
    )
    ev = parse_event(json.dumps(clamped))
    assert isinstance(ev, Event) and ev.adjusted == "clamped"
