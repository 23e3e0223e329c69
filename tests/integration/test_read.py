"""Reading partitions to their end against the real embedded broker (whose ListOffsets
"latest" is wrong after multi-record batches; the end here comes from the fetch response)."""

from __future__ import annotations

from confluent_kafka import Producer

from streams.broker.embedded import EmbeddedBroker
from streams.io.read import read_partition, read_to_end
from streams.io.topics import TopicSpec, ensure_topics


def test_reads_each_partition_to_its_end(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 3)])
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    for i in range(25):  # one producer batch: several records per broker batch
        p.produce(topic_name, b"a%d" % i, partition=0)
    for i in range(7):
        p.produce(topic_name, b"b%d" % i, partition=1)
    p.flush()

    def offsets(part: int, start: int) -> list[int]:
        return [m.offset() for m in read_partition(broker.bootstrap, topic_name, part, start)]

    assert offsets(0, 0) == list(range(25))
    assert offsets(0, 20) == [20, 21, 22, 23, 24]
    assert offsets(0, 25) == []  # at the end already
    assert offsets(2, 0) == []  # empty partition
    starts = {(topic_name, 0): 10, (topic_name, 1): 0, (topic_name, 2): 0}
    got: dict[int, list[bytes]] = {}
    for batch in read_to_end(broker.bootstrap, starts):
        for m in batch:
            got.setdefault(m.partition(), []).append(m.value())
    assert got == {0: [b"a%d" % i for i in range(10, 25)], 1: [b"b%d" % i for i in range(7)]}
