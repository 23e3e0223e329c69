"""The worker's side of the ingest process: cumulative reports become metric increments,
whatever reports were skipped in between (`IngestProcess.apply`)."""

from __future__ import annotations

import pickle

from streams.app.ingest import IngestConfig, IngestStats
from streams.app.ingest.process import IngestProcess, Report
from streams.app.watermark import NO_TIME
from streams.metrics import Metrics

TOPIC = "product-events"


def _config() -> IngestConfig:
    return IngestConfig(
        broker="127.0.0.1:9092",
        security=None,
        group="pql-test",
        instance_id=None,
        session_timeout_ms=6000,
        fetch_wait_ms=20,
        partitions=4,
        input_topic=TOPIC,
        dlq_topic="dlq",
        by_account_topic="by-account",
        by_user_topic="by-user",
        users_topic="users",
        trait_keys=frozenset({"role"}),
    )


def _value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _report(
    consumed: int,
    rejected: dict[str, int],
    committed_at: float,
    assigned: set[int],
    progress: dict[int, tuple[int, int, bool]],
) -> Report:
    stats = IngestStats(consumed, rejected, committed_at, frozenset(assigned))
    return Report(stats, progress)


def test_reports_become_increments_and_event_time() -> None:
    metrics = Metrics()
    ingest = IngestProcess(_config(), metrics)
    ingest.apply(_report(10, {"schema": 1}, 100.0, {0, 1}, {0: (5_000, 9, False)}))
    # A later report (some skipped in between): only what is new is added.
    ingest.apply(_report(25, {"schema": 3, "unknown_account": 1}, 90.0, {1}, {1: (7_000, 4, True)}))
    assert _value(metrics, "pql_events_consumed_total", topic=TOPIC) == 25
    assert _value(metrics, "pql_events_rejected_total", reason="schema") == 3
    assert _value(metrics, "pql_dlq_produced_total", reason="unknown_account") == 1
    # The commit gauge never moves back.
    assert _value(metrics, "pql_last_commit_timestamp_seconds") == 100.0
    assert ingest.assigned == frozenset({1})
    # Each partition's latest event time is its lag in seconds; partition 0 was revoked.
    metrics.refresh_lag_seconds(now=10.0)
    lag = "pql_consumer_lag_seconds"
    assert metrics.registry.get_sample_value(lag, {"topic": TOPIC, "partition": "1"}) == 3.0
    assert metrics.registry.get_sample_value(lag, {"topic": TOPIC, "partition": "0"}) is None


def test_the_same_report_twice_adds_nothing() -> None:
    metrics = Metrics()
    ingest = IngestProcess(_config(), metrics)
    r = _report(7, {"schema": 2}, 1.0, {0}, {0: (1_000, 6, False)})
    ingest.apply(r)
    ingest.apply(r)
    assert _value(metrics, "pql_events_consumed_total", topic=TOPIC) == 7
    assert _value(metrics, "pql_events_rejected_total", reason="schema") == 2


def test_adjusted_timestamps_and_paused_partitions_become_metrics() -> None:
    metrics = Metrics()
    ingest = IngestProcess(_config(), metrics)
    stats = IngestStats(5, {}, 1.0, frozenset({0, 1}), {"clamped": 2}, frozenset({1}))
    ingest.apply(Report(stats, {0: (NO_TIME, -1, True), 1: (2_000, 4, True)}))
    stats = IngestStats(9, {}, 2.0, frozenset({0, 1}), {"clamped": 3, "corrected": 1})
    ingest.apply(Report(stats, {}))
    assert _value(metrics, "pql_clock_skew_events_total", outcome="clamped") == 3
    assert _value(metrics, "pql_clock_skew_events_total", outcome="corrected") == 1
    assert _value(metrics, "pql_paused_input_partitions") == 0
    # A partition nothing was read from has no event time to report a lag from.
    metrics.refresh_lag_seconds(now=10.0)
    lag = "pql_consumer_lag_seconds"
    assert metrics.registry.get_sample_value(lag, {"topic": TOPIC, "partition": "0"}) is None


def test_what_crosses_the_pipe_pickles() -> None:
    config = _config()
    assert pickle.loads(pickle.dumps(config)) == config
    r = _report(1, {"schema": 1}, 2.0, {3}, {3: (9, 1, False)})
    assert pickle.loads(pickle.dumps(r)) == r
