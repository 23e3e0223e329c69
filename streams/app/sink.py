"""The account stage's producer: librdkafka (confluent-kafka) instead of Faust's per-record send
path, for everything the account stage writes — transitions, too-late events to the DLQ and the
`accounts` changelog (`streams.app.table_writer`).

Why: through Faust every record is a future, a buffer entry, an aiokafka accumulator append
and a few event-loop callbacks (~100+ µs of event-loop time each, measured with
`python -m bench.profile`); the account stage writes about one changelog record per changed
account per flush. librdkafka batches in C; `produce` costs a few µs of Python.

Delivery is awaited with `flush()`, which polls so the event loop keeps serving the other
agents meanwhile. A failed delivery is fatal: `error` is set, `flush()` raises, and the
worker's health check stops the process (its supervisor restarts it; nothing unflushed was
acked). A record librdkafka refuses at once (`produce` raising) counts the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.io.kafka_config import producer_config

FLUSH_TIMEOUT_S = 60.0


class DeliveryError(RuntimeError):
    """A record could not be delivered: the worker must not ack what depends on it."""


class Sink:
    def __init__(
        self,
        bootstrap: str,
        security: Mapping[str, Any] | None = None,
        *,
        linger_ms: int = 5,
    ) -> None:
        conf = producer_config(bootstrap, security, linger_ms=linger_ms)
        # Room for a whole flush of a busy worker; `produce` waits when it is full anyway.
        conf["queue.buffering.max.messages"] = 500_000
        self._producer = Producer(conf)
        self.error: KafkaError | None = None
        # Highest delivered offset per (topic, partition): what a table's persisted offset is.
        self.delivered: dict[tuple[str, int], int] = {}

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        """Queue one record (partition None: murmur2 of the key, as Kafka's Java client)."""
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if key is not None:
            kwargs["key"] = key
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = dict(headers)
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused at once (e.g. a partition the topic lacks)
                if self.error is None:
                    self.error = exc.args[0]
                self.check()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if self.error is None:
                self.error = err
            return
        key = (str(msg.topic()), int(msg.partition() or 0))
        offset = msg.offset()
        if offset is not None and offset > self.delivered.get(key, -1):
            self.delivered[key] = offset

    async def flush(self) -> None:
        """Return once every record produced so far is delivered; raise if any was not.

        Polls instead of blocking a thread in `Producer.flush`: `flush(0)` sends what is
        queued at once (linger ignored) and serves delivery callbacks; between polls the event
        loop runs the other agents. (A thread was measured at 10+ ms per flush under load:
        handing the GIL back and forth costs more than the round trip.)"""
        producer = self._producer
        left = producer.flush(0)
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        delay = 0.0005
        while left and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
            left = producer.flush(0)
        self.check()
        if left:
            raise DeliveryError(
                f"{left} records not delivered within {FLUSH_TIMEOUT_S:.0f} s: "
                "is the broker reachable?"
            )

    def check(self) -> None:
        if self.error is not None:
            raise DeliveryError(f"a record could not be delivered: {self.error}")

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
