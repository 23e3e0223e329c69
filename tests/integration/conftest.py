"""Shared fixtures for integration tests: the integration suite runs against both brokers.

`broker` is parametrised over the embedded broker (Tansu) and a real Apache Kafka broker
(single-node KRaft from Maven Central jars): every test that takes it runs once on each, with
`[embedded]` or `[kafka]` in its id. Each broker starts once per session (starting is cheap,
stopping takes seconds once clients have connected); tests stay independent by using their own
topics (`topic_name`), which they create themselves: the Kafka broker, as production clusters
often are, does not create topics a client names. Tests about one broker's own behaviour take
`embedded_broker` or `kafka_broker` instead.
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


BROKERS = ("embedded", "kafka")

# The session's Kafka broker as production clusters that compact are tuned for tests: the log
# cleaner looks for work every half second (the default is 15 s), so a test that rolls small
# segments sees its changelog really compacted within seconds.
KAFKA_TEST_PROPERTIES = {"log.cleaner.backoff.ms": "500"}


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """The session's embedded broker (Tansu) on a free port; use `.bootstrap`."""
    embedded = EmbeddedBroker()
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


def _running_kafka() -> Iterator[KafkaBroker]:
    kafka = KafkaBroker(properties=KAFKA_TEST_PROPERTIES)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.cleanup()


@pytest.fixture(scope="session")
def session_kafka_broker() -> Iterator[KafkaBroker]:
    """The session's Apache Kafka broker (KRaft, one node, topic auto-creation off)."""
    yield from _running_kafka()


@pytest.fixture(scope="session", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> EmbeddedBroker | KafkaBroker:
    """The session's broker of each kind in turn; use `broker.bootstrap` (`broker.name` says
    which: "tansu" or "kafka")."""
    name = "embedded_broker" if request.param == "embedded" else "session_kafka_broker"
    started: EmbeddedBroker | KafkaBroker = request.getfixturevalue(name)
    return started


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[KafkaBroker]:
    """An Apache Kafka broker of the module's own, for tests that stop, restart or reconfigure
    it (its jars are fetched from Maven Central once); use `kafka_broker.bootstrap`. Per
    module: an idle JVM would otherwise sit beside every later test."""
    yield from _running_kafka()


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
