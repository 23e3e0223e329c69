"""`install` gives Faust's aiokafka consumer the fetch wait we choose (Faust hard-codes 1500 ms,
which the embedded broker waits out in full on multi-partition fetches) and the 1 MiB a fetch
waits for (Faust leaves aiokafka's 1 byte, which Kafka answers at once, record by record)."""

from __future__ import annotations

import asyncio

import faust
from faust.transport.drivers import aiokafka as driver

from streams.app.faust_transport import install
from streams.io.kafka_config import FETCH_MIN_BYTES


def _worker_consumer(app: faust.App) -> object:
    """The aiokafka consumer Faust's consumer thread would start (created, never started:
    aiokafka wants a running loop to be constructed in, nothing more)."""

    async def make() -> object:
        return app.consumer._thread._create_worker_consumer(app.transport)

    return asyncio.run(make())


def test_install_sets_the_fetch_wait() -> None:
    app = faust.App("pql-test-fetch", broker="kafka://127.0.0.1:1", autodiscover=False)
    install(app, 20)
    assert isinstance(app.transport, driver.Transport)
    consumer = _worker_consumer(app)
    assert consumer._fetch_max_wait_ms == 20  # type: ignore[attr-defined]
    assert consumer._fetch_min_bytes == FETCH_MIN_BYTES == 1 << 20  # type: ignore[attr-defined]


def test_without_install_faust_keeps_its_default() -> None:
    app = faust.App("pql-test-fetch-default", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = _worker_consumer(app)
    assert consumer._fetch_max_wait_ms == 1500  # type: ignore[attr-defined]
    assert consumer._fetch_min_bytes == 1  # type: ignore[attr-defined]
