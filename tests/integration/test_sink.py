"""The account stage's librdkafka sink against the real embedded broker: delivery is awaited,
delivered offsets are tracked per partition (a table's persisted offset), and a record that
cannot be delivered makes `flush` raise instead of being lost silently."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.app.sink import DeliveryError, Sink
from streams.broker.embedded import EmbeddedBroker
from streams.io.kafka_config import consumer_config
from streams.io.topics import TopicSpec, ensure_topics


def _read(bootstrap: str, topic: str, partition: int, n: int) -> list[tuple[bytes, bytes]]:
    c = Consumer(consumer_config(bootstrap, None))
    c.assign([TopicPartition(topic, partition, 0)])
    out: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(100):
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    out.append((m.key() or b"", m.value() or b""))
            if len(out) >= n:
                break
    finally:
        c.close()
    return out


def test_flush_delivers_in_order_and_tracks_offsets(
    broker: EmbeddedBroker, topic_name: str
) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 2)])
    sink = Sink(broker.bootstrap)

    async def run() -> None:
        for i in range(50):
            sink.produce(topic_name, b"v%d" % i, b"k", partition=1)
        await sink.flush()
        assert sink.delivered[(topic_name, 1)] == 49
        sink.produce(topic_name, b"last", b"k", partition=1)
        await sink.flush()
        assert sink.delivered[(topic_name, 1)] == 50

    asyncio.run(run())
    sink.close()
    assert (topic_name, 0) not in sink.delivered
    got = _read(broker.bootstrap, topic_name, 1, 51)
    assert [v for _, v in got] == [b"v%d" % i for i in range(50)] + [b"last"]


def test_undeliverable_record_fails_the_flush(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 1)])
    sink = Sink(broker.bootstrap)

    async def run() -> None:
        # The topic has one partition: refused at produce or at delivery, depending on whether
        # librdkafka has the topic's metadata yet; either way it is a DeliveryError.
        sink.produce(topic_name, b"x", partition=7)
        await sink.flush()

    with pytest.raises(DeliveryError):
        asyncio.run(run())
    with pytest.raises(DeliveryError):
        sink.check()  # and it stays failed: the worker's health check stops the process
    sink.close(timeout=1)
