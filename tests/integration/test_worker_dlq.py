"""Bad input goes to the dead-letter topic with the original bytes and the reason in headers;
the worker keeps scoring the good events after it and counts rejects by reason in /metrics."""

from __future__ import annotations

from pathlib import Path

from tests.integration.worker_harness import (
    EXAMPLES,
    REPO,
    WorkerNames,
    Workers,
    backtest,
    collect,
    diff_report,
    metric_samples,
    produce,
    transition_key,
    wait_consumed,
    workers,  # noqa: F401 - fixture
)

EVENTS = REPO / "tests" / "data" / "integration" / "dlq.jsonl"
MODEL = EXAMPLES / "team-chat.yaml"

# messageId (or the line itself) -> the reason the worker must give
BAD = {
    b"this line is not JSON {": "invalid_json",
    b"d-bad-ts": "missing_timestamp",
    b"d-bad-type": "wrong_field_type",
    b"d-no-account": "missing_account",  # a track from a user who joined no account
}


def _bad_lines() -> dict[str, bytes]:
    """reason -> the exact line of EVENTS."""
    out = {}
    for line in EVENTS.read_bytes().splitlines():
        for marker, reason in BAD.items():
            if marker in line:
                out[reason] = line
    assert len(out) == len(BAD)
    return out


def test_worker_dlq(broker: object, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = workers.bootstrap
    names = WorkerNames.unique("dlq")
    names.create_topics(bootstrap)
    w = workers.start(MODEL, names)
    dlq = workers.reader(names.dlq_topic)
    out = workers.reader(names.output_topic)
    expected = backtest(MODEL, EVENTS, out_dir=tmp_path)
    # The file's last event (after every bad line) must matter, or "keeps going" proves nothing.
    assert {t["message_id"] for t in expected} >= {"d-t6", "d-t7"}

    stats = produce(bootstrap, names.input_topic, EVENTS)
    assert stats.read == 12

    got = collect(out, expected, timeout=45, settle=w.settle)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )

    assert dlq.wait_for(lambda recs: len(recs) >= len(BAD), timeout=20, settle=2)
    by_reason = {r.headers.get("pql-reason", b"").decode(): r for r in dlq.records}
    assert len(dlq.records) == len(BAD), [r.value for r in dlq.records]
    assert set(by_reason) == set(BAD.values())
    for reason, rec in by_reason.items():
        assert rec.headers["pql-detail"], f"{reason}: empty pql-detail"
    assert b"context.groupId" in by_reason["wrong_field_type"].headers["pql-detail"]
    assert b"stranger" in by_reason["missing_account"].headers["pql-detail"]

    rejected = metric_samples(w.metrics(), "pql_events_rejected_total")
    assert rejected == {f'{{reason="{r}"}}': 1.0 for r in BAD.values()}, rejected
    wait_consumed([w], names.input_topic, 12, timeout=5)

    # Last, because it is where the worker falls short today: the original bytes, exactly.
    originals = _bad_lines()
    wrong = {
        reason: (rec.value, originals[reason])
        for reason, rec in by_reason.items()
        if rec.value != originals[reason]
    }
    assert not wrong, "DLQ value is not the original input line:\n" + "\n".join(
        f"  {reason} (stage {by_reason[reason].headers.get('pql-stage')!r}):\n"
        f"    got      {got_v!r}\n    original {orig!r}"
        for reason, (got_v, orig) in wrong.items()
    )
