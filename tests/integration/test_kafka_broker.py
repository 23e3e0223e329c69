"""The real Apache Kafka broker (`streams.broker.kafka`, KRaft from Maven Central jars): starts,
is told apart from the embedded broker, keeps its data across a restart, refuses to create
topics by itself (as production clusters often do). Its watchdog and `pql broker --kafka`:
`test_broker.py`."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams.broker.detect import cluster_id, is_embedded_broker
from streams.broker.kafka import KafkaBroker
from streams.io.topics import TopicSpec, ensure_topics
from tests.integration.test_broker import _alive

REPO = Path(__file__).resolve().parents[2]


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(30) == 0


def _read(bootstrap: str, topic: str, n: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "log_level": 0})
    c.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value() or b"")
    finally:
        c.close()
    return got


def test_kafka_starts_keeps_its_data_across_a_restart_and_stops_clean(
    kafka_broker: KafkaBroker,
) -> None:
    b = kafka_broker
    assert b.is_running() and b.cluster_id is not None
    assert cluster_id(b.bootstrap) == b.cluster_id
    assert not is_embedded_broker(b.bootstrap)
    ensure_topics(b.bootstrap, [TopicSpec("kept", 1)])
    _produce(b.bootstrap, "kept", [b"a", b"b"])
    pid = b.pid
    assert pid is not None
    b.stop()
    assert not _alive(pid)
    b.start()
    assert b.pid != pid and cluster_id(b.bootstrap) == b.cluster_id
    assert _read(b.bootstrap, "kept", 2) == [b"a", b"b"]


def test_kafka_does_not_create_topics_a_client_names(kafka_broker: KafkaBroker) -> None:
    conf = {"bootstrap.servers": kafka_broker.bootstrap, "log_level": 0}
    p = Producer({**conf, "message.timeout.ms": 3000})
    errors: list[KafkaError] = []
    p.produce(
        "nobody-created-this",
        b"x",
        on_delivery=lambda err, msg: errors.append(err),
    )
    p.flush(15)
    assert errors and errors[0] is not None
    md = p.list_topics(timeout=10)
    assert "nobody-created-this" not in md.topics
