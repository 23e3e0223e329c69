"""Faust's aiokafka transport with one setting Faust does not expose: the consumer's fetch
long-poll wait (`fetch_max_wait_ms`, hard-coded to 1500 ms in faust-streaming 0.15).

Why it matters: on the embedded broker (Tansu) a fetch request naming several partitions is not
answered early when records arrive; it waits out the full `fetch_max_wait_ms` (measured: 0.7 s
median, 1.5 s max from produce to aiokafka receive with 4 partitions, 15 ms with a 100 ms wait).
That wait was most of the worker's end-to-end latency. Kafka answers as soon as data arrives,
so there the wait only bounds idle polling.

Installed with `install(app, fetch_max_wait_ms)`, which replaces the app's transport by this
subclass (`App.transport` is settable); everything else is Faust's own driver.
"""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms: int = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
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
