"""Faust's aiokafka transport with two settings Faust does not expose: the consumer's fetch
long-poll wait (`fetch_max_wait_ms`, hard-coded to 1500 ms in faust-streaming 0.15) and the
data a fetch waits for (`fetch_min_bytes`, 1).

Why they matter: on the embedded broker (Tansu) a fetch request naming several partitions is not
answered early when records arrive; it waits out the full `fetch_max_wait_ms` (measured: 0.7 s
median, 1.5 s max from produce to aiokafka receive with 4 partitions, 15 ms with a 100 ms wait).
Kafka answers a fetch as soon as one byte is there: every few records their own request and
response, which cost Kafka's JVM more than a core here and took the worker's end-to-end latency
to 3-5 s (issue 13). So on every broker a fetch waits `fetch_max_wait_ms` (20 ms) unless
`fetch_min_bytes` (1 MiB, a backlog) is there first.

Installed with `install(app, fetch_max_wait_ms)`, which replaces the app's transport by this
subclass (`App.transport` is settable); everything else is Faust's own driver.
"""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as driver

from streams.io.kafka_config import FETCH_MIN_BYTES


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms: int = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads them when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        return consumer


class _Consumer(driver.Consumer):
    fetch_max_wait_ms: int = 1500

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        thread = _ConsumerThread(self, loop=self.loop, beacon=self.beacon)
        thread.fetch_max_wait_ms = self.fetch_max_wait_ms
        return thread


def install(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Make `app` use Faust's aiokafka driver with this fetch wait."""

    consumer = type("Consumer", (_Consumer,), {"fetch_max_wait_ms": fetch_max_wait_ms})

    class Transport(driver.Transport):
        Consumer: ClassVar[Any] = consumer

    app.transport = Transport(app.conf.broker_consumer, app)
