"""Reading partitions to their end with librdkafka, in batches.

The end is the fetch response's high watermark (`enable.partition.eof`), which is right on the
embedded broker too, unlike its ListOffsets "latest" (shared notes, Tansu bug 2).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.io.kafka_config import consumer_config

READ_BATCH = 10_000
POLL_S = 0.05
STALL_S = 10.0


def read_to_end(
    bootstrap: str,
    starts: Mapping[tuple[str, int], int],
    security: Mapping[str, Any] | None = None,
) -> Iterator[list[Message]]:
    """Batches of records of several partitions ({(topic, partition): first offset}), each
    partition read to its end (records of different partitions may share a batch; each
    partition's records come in offset order)."""
    pending = set(starts)
    if not pending:
        return
    reader = Consumer(
        consumer_config(bootstrap, None, security)
        | {"enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024}
    )
    try:
        reader.assign([TopicPartition(t, p, off) for (t, p), off in starts.items()])
        deadline = time.monotonic() + STALL_S
        while pending:
            # consume() waits for a full batch or its timeout: short polls, one deadline.
            msgs = reader.consume(READ_BATCH, POLL_S)
            if not msgs:
                if time.monotonic() > deadline:
                    names = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                    raise RuntimeError(f"no end of {names} within {STALL_S:.0f} s")
                continue
            deadline = time.monotonic() + STALL_S
            batch = []
            for m in msgs:
                err = m.error()
                if err is None:
                    batch.append(m)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((str(m.topic()), int(m.partition() or 0)))
                else:
                    raise RuntimeError(f"reading {m.topic()}[{m.partition()}]: {err}")
            if batch:
                yield batch
    finally:
        reader.close()


def read_partition(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int,
    security: Mapping[str, Any] | None = None,
) -> Iterator[Message]:
    """Every record of `topic[partition]` from offset `start` to its end."""
    for batch in read_to_end(bootstrap, {(topic, partition): start}, security):
        yield from batch
