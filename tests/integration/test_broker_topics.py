"""ensure_topics on the embedded broker: explicit partition counts and configs, idempotence,
races, and a clear error when an existing topic has the wrong partition count."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streams.broker.embedded import EmbeddedBroker, free_port
from streams.io.topics import (
    BrokerUnreachableError,
    TopicMismatchError,
    TopicSpec,
    ensure_topics,
    topic_partitions,
)


def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(timeout=10)
    return {name: entry.value for name, entry in entries.items()}


def test_creates_with_partitions_and_config(broker: EmbeddedBroker, topic_name: str) -> None:
    changelog = f"{topic_name}-changelog"
    created = ensure_topics(
        broker.bootstrap,
        [
            TopicSpec(topic_name, 7),
            TopicSpec(changelog, 3, {"cleanup.policy": "compact"}),
        ],
    )
    assert sorted(created) == sorted([topic_name, changelog])
    assert topic_partitions(broker.bootstrap, topic_name) == 7
    assert topic_partitions(broker.bootstrap, changelog) == 3
    assert _configs(broker.bootstrap, changelog).get("cleanup.policy") == "compact"


def test_idempotent(broker: EmbeddedBroker, topic_name: str) -> None:
    spec = TopicSpec(topic_name, 5)
    assert ensure_topics(broker.bootstrap, [spec]) == [topic_name]
    assert ensure_topics(broker.bootstrap, [spec]) == []
    assert topic_partitions(broker.bootstrap, topic_name) == 5


def test_concurrent_callers_all_succeed(broker: EmbeddedBroker, topic_name: str) -> None:
    spec = TopicSpec(topic_name, 6)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ensure_topics(broker.bootstrap, [spec]), range(8)))
    assert sum(len(r) for r in results) <= 1  # at most one caller actually created it
    assert topic_partitions(broker.bootstrap, topic_name) == 6


def test_existing_topic_with_other_count_raises(broker: EmbeddedBroker, topic_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 4, 1)])[topic_name].result(timeout=10)
    with pytest.raises(TopicMismatchError) as info:
        ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 8)])
    err = info.value
    assert (err.topic, err.expected, err.actual) == (topic_name, 8, 4)
    assert "4 partitions" in str(err) and "8 are required" in str(err)
    assert "pql broker" in str(err)  # says what to do


def test_topic_partitions_does_not_auto_create(broker: EmbeddedBroker, topic_name: str) -> None:
    assert topic_partitions(broker.bootstrap, topic_name) is None
    assert topic_partitions(broker.bootstrap, topic_name) is None  # still absent


def test_unreachable_broker_error_says_what_to_do() -> None:
    with pytest.raises(BrokerUnreachableError) as info:
        ensure_topics(f"127.0.0.1:{free_port()}", [TopicSpec("x", 1)], timeout=1)
    assert "pql broker" in str(info.value)
