"""Client settings: the partitioner that makes keys land where Faust expects is never lost."""

from __future__ import annotations

import pytest

from streams.io.kafka_config import (
    confluent_common,
    consumer_config,
    producer_config,
    security_settings,
)

SASL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "u",
    "sasl.password": "p",
    "ssl.ca.location": "/etc/ca.pem",
}


def test_producer_always_murmur2_and_batches() -> None:
    conf = producer_config("k:9092", SASL, linger_ms=50)
    assert conf["partitioner"] == "murmur2_random"
    assert conf["linger.ms"] == 50
    assert conf["batch.size"] > 16384
    assert conf["bootstrap.servers"] == "k:9092"
    assert {k: conf[k] for k in SASL} == SASL
    # no idempotence, so ordering under retries needs a single request in flight
    assert conf["enable.idempotence"] is False
    assert conf["max.in.flight.requests.per.connection"] == 1


def test_security_may_not_override_other_settings() -> None:
    with pytest.raises(ValueError, match="partitioner"):
        producer_config("k:9092", {"partitioner": "consistent_random"})
    with pytest.raises(ValueError, match="group.id"):
        confluent_common("k:9092", {"group.id": "x"})


def test_consumer_config() -> None:
    conf = consumer_config("k:9092", "g", session_timeout_ms=6000)
    assert conf["group.id"] == "g"
    assert conf["session.timeout.ms"] == 6000
    assert conf["heartbeat.interval.ms"] < 6000
    assert conf["enable.auto.commit"] is False
    assign_only = consumer_config("k:9092", None)
    assert assign_only["enable.auto.commit"] is False
    assert "group.id" in assign_only  # librdkafka wants one even without joining
    assert "fetch.wait.max.ms" not in conf  # librdkafka's defaults unless asked
    assert "fetch.min.bytes" not in conf
    waiting = consumer_config("k:9092", "g", fetch_wait_ms=20)
    assert waiting["fetch.wait.max.ms"] == 20
    assert waiting["fetch.min.bytes"] == 1 << 20  # the broker holds the fetch for the wait


def test_security_settings() -> None:
    assert security_settings() is None
    assert security_settings("plaintext") is None
    got = security_settings("SASL_SSL", "PLAIN", "u", "p", "/ca.pem")
    assert got == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }
