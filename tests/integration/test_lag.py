"""`pql lag` / `consumer_group_lag` on both brokers: the numbers must be exactly right, not
merely present.

Records are produced in multi-record batches on purpose: that is when the embedded broker's
ListOffsets answer (and so a naive `get_watermark_offsets()`) is wrong, so these tests fail if
the fetch-probe workaround in `streams.io.lag` breaks. On Kafka the plain ListOffsets answer is
used, and `test_lag_kafka_tool.py` checks it against Kafka's own consumer-group tool."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.cli import main
from streams.io.lag import consumer_group_lag, is_embedded
from tests.integration.kafka_tools import describe_group

pytestmark = pytest.mark.integration

BATCH = 5  # records per produce batch
# partition -> records; not multiples of BATCH, so the last batch of each is partial
COUNTS = {0: 42, 1: 23, 2: 11}
# partition -> committed offset (None: never committed); 7 and 13 fall inside batches
COMMITTED: dict[int, int | None] = {0: 7, 1: 13, 2: None}


def _create_topic(bootstrap: str, partitions: int) -> str:
    """A fresh topic created explicitly (the broker would auto-create with 4 partitions)."""
    topic = f"lag-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
    return topic


def _produce_batched(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """Produce counts[p] records to each partition p in batches of BATCH records: a long
    linger keeps records together until flush() sends the batch as one request."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5000, "batch.num.messages": 1000}
    )
    for partition, n in counts.items():
        for start in range(0, n, BATCH):
            for i in range(start, min(start + BATCH, n)):
                producer.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
            assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int | None]) -> None:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = [TopicPartition(topic, p, o) for p, o in offsets.items() if o is not None]
        consumer.commit(offsets=tps, asynchronous=False)
    finally:
        consumer.close()


def _consume_all_and_commit(bootstrap: str, group: str, topic: str, total: int) -> int:
    """Join the group like a real consumer, read ``total`` records from the committed
    positions, commit; returns how many records were read (one more poll checks for extras)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # the broker answers JoinGroup after session/2
        }
    )
    seen = 0
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while seen < total and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            seen += 1
        extra = consumer.poll(1.0)
        if extra is not None and extra.error() is None:
            seen += 1
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return seen


def _expected(counts: dict[int, int], committed: dict[int, int | None]) -> dict[int, int]:
    return {p: n - (committed.get(p) or 0) for p, n in counts.items()}


def _by_partition(rows: list[Any]) -> dict[int, tuple[int | None, int, int]]:
    return {r.partition: (r.committed, r.log_end, r.lag) for r in rows}


@pytest.fixture()
def batched_topic(broker: Any) -> str:
    topic = _create_topic(broker.bootstrap, len(COUNTS))
    _produce_batched(broker.bootstrap, topic, COUNTS)
    return topic


def test_lag_probes_only_on_the_embedded_broker(broker: Any) -> None:
    """The probe is for the embedded broker's bug; Kafka's ListOffsets is trusted."""
    assert is_embedded(broker.bootstrap) == (broker.name == "tansu")


def test_lag_exact_per_partition_then_zero(broker: Any, batched_topic: str) -> None:
    bootstrap, topic = broker.bootstrap, batched_topic
    group = f"g-{uuid.uuid4().hex[:10]}"
    _commit(bootstrap, group, topic, COMMITTED)

    rows = consumer_group_lag(bootstrap, group, [topic])
    assert [(r.topic, r.partition) for r in rows] == [(topic, p) for p in sorted(COUNTS)]
    assert _by_partition(rows) == {
        p: (COMMITTED[p], COUNTS[p], _expected(COUNTS, COMMITTED)[p]) for p in COUNTS
    }
    # Without --topic: topics come from the group's commits, and the partition it never
    # committed on (2) is still reported.
    assert _by_partition(consumer_group_lag(bootstrap, group)) == _by_partition(rows)

    # A real group member resumes from the commits, reads the rest and commits: lag 0.
    remaining = sum(_expected(COUNTS, COMMITTED).values())
    assert _consume_all_and_commit(bootstrap, group, topic, remaining) == remaining
    after = consumer_group_lag(bootstrap, group, [topic])
    assert _by_partition(after) == {p: (COUNTS[p], COUNTS[p], 0) for p in COUNTS}


def test_cli_json_and_table(broker: Any, batched_topic: str) -> None:
    bootstrap, topic = broker.bootstrap, batched_topic
    group = f"g-{uuid.uuid4().hex[:10]}"
    _commit(bootstrap, group, topic, COMMITTED)
    expected = _expected(COUNTS, COMMITTED)

    res = CliRunner().invoke(
        main, ["lag", "--broker", bootstrap, "--group", group, "--topic", topic, "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["group"] == group
    assert {p["partition"]: p["lag"] for p in doc["partitions"]} == expected
    assert {p["partition"]: p["log_end"] for p in doc["partitions"]} == COUNTS
    assert doc["total_lag"] == sum(expected.values())

    # The real entry point in a subprocess, table output.
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "lag", "--broker", bootstrap, "--group", group],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines[0] == ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"]
    body = {int(cols[1]): cols for cols in lines[1:-1]}
    for p, n in COUNTS.items():
        committed = COMMITTED[p]
        assert body[p] == [
            topic,
            str(p),
            "-" if committed is None else str(committed),
            str(n),
            str(expected[p]),
        ]
    assert lines[-1] == [
        "TOTAL",
        str(len(COUNTS)),
        str(sum(COUNTS.values())),
        str(sum(expected.values())),
    ]

    # Commit everything explicitly: the CLI reports 0.
    _commit(bootstrap, group, topic, dict(COUNTS))
    res = CliRunner().invoke(
        main, ["lag", "--broker", bootstrap, "--group", group, "--topic", topic, "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["total_lag"] == 0
    assert {p["partition"]: p["committed"] for p in doc["partitions"]} == COUNTS


def test_naive_list_offsets_would_be_wrong_on_the_embedded_broker(embedded_broker: Any) -> None:
    """Why the probe exists: on this broker ListOffsets under-reports batched partitions. If
    this fails, the broker was fixed (or batching did not happen, and the tests above prove
    less than they claim)."""
    bootstrap = embedded_broker.bootstrap
    batched_topic = _create_topic(bootstrap, len(COUNTS))
    _produce_batched(bootstrap, batched_topic, COUNTS)
    group = f"g-{uuid.uuid4().hex[:10]}"
    naive = consumer_group_lag(bootstrap, group, [batched_topic], probe=False)
    probed = consumer_group_lag(bootstrap, group, [batched_topic], probe=True)
    assert {r.partition: r.log_end for r in probed} == COUNTS
    assert {r.partition: r.log_end for r in naive} != COUNTS


def test_probe_on_empty_and_fully_committed_partitions(broker: Any) -> None:
    """End-of-partition answers (nothing to fetch) must still give the right log end."""
    topic = _create_topic(broker.bootstrap, 2)
    _produce_batched(broker.bootstrap, topic, {0: 12})  # partition 1 stays empty
    group = f"g-{uuid.uuid4().hex[:10]}"
    _commit(broker.bootstrap, group, topic, {0: 12})
    rows = consumer_group_lag(broker.bootstrap, group, [topic], probe=True)
    assert _by_partition(rows) == {0: (12, 12, 0), 1: (None, 0, 0)}


def test_lag_agrees_with_kafkas_consumer_group_tool(session_kafka_broker: Any) -> None:
    """On real Kafka, `pql lag` says what Kafka's own consumer-group tool says, partition by
    partition (the tool lists only the partitions the group committed on)."""
    bootstrap = session_kafka_broker.bootstrap
    topic = _create_topic(bootstrap, len(COUNTS))
    _produce_batched(bootstrap, topic, COUNTS)
    group = f"g-{uuid.uuid4().hex[:10]}"
    _commit(bootstrap, group, topic, COMMITTED)

    tool = describe_group(bootstrap, group)
    assert set(tool) == {(topic, p) for p, o in COMMITTED.items() if o is not None}, tool
    res = CliRunner().invoke(
        main, ["lag", "--broker", bootstrap, "--group", group, "--topic", topic, "--json"]
    )
    assert res.exit_code == 0, res.output
    ours = {
        (topic, r["partition"]): (r["committed"], r["log_end"], r["lag"])
        for r in json.loads(res.output)["partitions"]
    }
    assert {k: ours[k] for k in tool} == tool
    assert ours[(topic, 2)] == (None, COUNTS[2], COUNTS[2])  # never committed: all of it
