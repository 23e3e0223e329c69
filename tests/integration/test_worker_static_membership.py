"""Two workers with static group membership (`--instance-id`) and standby replicas, on real
Kafka: a worker restarted with the same instance id (as a Kubernetes StatefulSet pod is) gets
its partitions back without a group rebalance, so the other worker never stops; then, while
events flow, one worker is SIGKILLed and a third joins, and together they still emit exactly
the transitions `pql backtest` gives (re-emits of the same transition id allowed).

Kafka only: static membership is a broker feature (KIP-345) the embedded broker does not have."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from streams.broker.kafka import KafkaBroker
from streams.io.lag import consumer_group_lag
from streams.io.simulate import generate
from tests.integration.test_worker_two_workers import _both_ready
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_duplicates_identical,
    backtest,
    collect,
    diff_report,
    metric_samples,
    name_accounts,
    produce,
    produce_in_background,
    transition_key,
    workers,  # noqa: F401 - fixture
    write_parts,
)

MODEL = EXAMPLES / "team-chat.yaml"
# Long enough for a worker to come back before the broker gives its instance id up; a killed
# static member's partitions move only once it has passed.
SESSION_TIMEOUT_S = 20


@pytest.fixture()
def broker(session_kafka_broker: KafkaBroker) -> KafkaBroker:
    return session_kafka_broker


def _rebalances(w: WorkerProc) -> tuple[float, int]:
    """Rebalances of the worker's stage group (Faust) and of its ingest group (log lines)."""
    faust = sum(metric_samples(w.metrics(), "pql_rebalances_total").values())
    text = w.log_path.read_text(errors="replace")
    ingest = len(re.findall(r"ingest assigned input partitions", text))
    return faust, ingest


def _ingest_partitions(w: WorkerProc) -> list[int]:
    """The input partitions the worker's ingest was last assigned (from its log)."""
    found = re.findall(r"ingest assigned input partitions \[([\d, ]*)\]", w.log_path.read_text())
    assert found, w.log_tail()
    return [int(p) for p in found[-1].split(",") if p.strip()]


def _ingest_split(pair: list[WorkerProc], timeout: float = 30) -> None:
    """Until the two ingests share the input partitions between them (their group settled)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            a, b = (set(_ingest_partitions(w)) for w in pair)
        except AssertionError:  # no assignment logged yet
            a = b = set()
        if a and b and not a & b and a | b == set(range(PARTITIONS)):
            return
        assert time.monotonic() < deadline, (a, b)
        time.sleep(0.5)


def _caught_up(bootstrap: str, group: str, topic: str, timeout: float) -> None:
    """Until the group has committed everything on `topic` (Kafka's log ends are exact)."""
    deadline = time.monotonic() + timeout
    while sum(r.lag for r in consumer_group_lag(bootstrap, group, [topic])) > 0:
        assert time.monotonic() < deadline, f"{group} did not catch up on {topic}"
        time.sleep(0.5)


def _group_log(broker: KafkaBroker, app_id: str) -> str:
    """The broker's log lines about the test's groups (why each rebalance happened)."""
    text = broker.log_path.read_text(errors="replace") if broker.log_path else ""
    return "\n".join(line for line in text.splitlines() if app_id in line)


def _static(name: str) -> tuple[str, ...]:
    return (
        "--instance-id",
        name,
        "--standby-replicas",
        "1",
        "--session-timeout",
        str(SESSION_TIMEOUT_S),
    )


def test_a_static_member_restarts_without_a_rebalance(
    broker: KafkaBroker,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    events = name_accounts(generate(accounts=24, days=12, seed=17))
    third = len(events) // 3
    first, second, rest = write_parts(tmp_path, events, 3)
    expected = backtest(MODEL, first, second, rest, out_dir=tmp_path)

    names = WorkerNames.unique("static")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    pair = [workers.new(MODEL, names, name=n, extra_args=_static(n)).start() for n in ("w1", "w2")]
    for w in pair:
        w.wait_ready(timeout=90)
    _both_ready(pair, timeout=60)
    _ingest_split(pair)
    w1, w2 = pair

    produce(bootstrap, names.input_topic, first)
    _caught_up(bootstrap, names.app_id, names.input_topic, timeout=90)
    owned_before = _ingest_partitions(w2)
    seen_by_w1 = _rebalances(w1)

    assert w2.stop() == 0, w2.log_tail()
    w2.start().wait_ready(timeout=90)  # same instance id, same data dir
    _both_ready(pair, timeout=30)
    assert _rebalances(w1) == seen_by_w1, (
        "w1 went through a rebalance when w2 restarted with its instance id:\n"
        + _group_log(broker, names.app_id)
    )
    assert _ingest_partitions(w2) == owned_before

    produce(bootstrap, names.input_topic, second)
    _caught_up(bootstrap, names.app_id, names.input_topic, timeout=90)
    assert _rebalances(w1) == seen_by_w1, _group_log(broker, names.app_id)

    # While the rest flows: w1 is killed (its partitions move once its session expires) and a
    # third worker joins.
    flowing = produce_in_background(bootstrap, names.input_topic, rest, rate=third / 10)
    time.sleep(2)
    w1.kill()
    w3 = workers.new(MODEL, names, name="w3", extra_args=_static("w3")).start()
    w3.wait_ready(timeout=90)
    flowing.join(60)
    got = collect(
        reader, expected, timeout=150, settle=w2.settle, give_up_idle=SESSION_TIMEOUT_S + 15
    )
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )
    assert_duplicates_identical(got)
