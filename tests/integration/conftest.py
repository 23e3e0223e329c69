"""Shared fixtures for integration tests: one real embedded broker per session.

One broker for the whole session because starting is cheap but stopping takes seconds once
clients have connected; tests stay independent by using their own topics (`topic_name`), since
the broker auto-creates any topic a client names and keeps it until the session ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.broker.embedded import EmbeddedBroker
from streams.broker.kafka import KafkaBroker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as `integration` (`-m "not integration"`)."""
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A started embedded broker on a free port; use `broker.bootstrap`."""
    embedded = EmbeddedBroker()
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A started Apache Kafka broker (single-node KRaft, topic auto-creation off; its jars are
    fetched from Maven Central once); use `kafka_broker.bootstrap`. Per module: an idle JVM
    would otherwise sit beside every later test."""
    kafka = KafkaBroker()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.cleanup()


@pytest.fixture()
def new_topic_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A factory of unique topic names for tests that need several: new_topic_name("out")."""
    test = request.node.name.split("[")[0].replace("_", "-")[:40]

    def make(suffix: str = "t") -> str:
        return f"{test}-{suffix}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture()
def topic_name(new_topic_name: Callable[[str], str]) -> str:
    """A topic name no other test uses (nothing creates it: create it with the count you need)."""
    return new_topic_name("t")
