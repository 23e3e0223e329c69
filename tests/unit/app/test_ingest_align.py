"""The ingest's watermark alignment (`streams.app.ingest.stage.Ingest._align`): pausing a
partition that runs ahead never stops the ingest, whatever librdkafka says to the seek that
drops its prefetch (CI: a seek overtaken by the partition's fetch start, `_OUTDATED`, ended the
ingest process and so the worker)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.app.ingest import stage
from streams.app.ingest.process import IngestStats
from streams.app.ingest.stage import Ingest
from tests.unit.app.test_ingest_process import _config


class SeekRefused:
    """The slice of a librdkafka consumer `_align` uses; every seek fails with `code`."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.paused: list[int] = []
        self.resumed: list[int] = []
        self.seeks: list[tuple[int, int]] = []

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [tp.partition for tp in tps]

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed += [tp.partition for tp in tps]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        raise KafkaException(KafkaError(self.code))


@pytest.mark.parametrize(
    ("code", "level"),
    [
        (KafkaError._STATE, logging.DEBUG),
        (KafkaError._OUTDATED, logging.DEBUG),
        (KafkaError._UNKNOWN_PARTITION, logging.WARNING),
    ],
)
def test_a_refused_seek_after_a_pause_keeps_the_ingest_going(
    code: int, level: int, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    consumer = SeekRefused(code)
    # No librdkafka client at all (no broker here): the consumer is the double, the producer
    # is never used.
    monkeypatch.setattr(stage, "Consumer", lambda conf: consumer)
    monkeypatch.setattr(stage, "Producer", lambda conf: None)
    ingest = Ingest(_config(), IngestStats(0, {}, 0.0, frozenset({0, 1})))
    # Partition 1 has read past the drift bound (its last record at offset 41); 0 lags. Both
    # are behind (no high watermark known), so both are active.
    drift = ingest.config.max_drift_ms
    ingest.progress.observe(0, 1_000, 10, None, 0.0)
    ingest.progress.observe(1, 1_000 + drift + 1, 41, None, 0.0)
    with caplog.at_level(logging.DEBUG, logger="streams.ingest"):
        ingest._align(0.0)
    assert consumer.paused == [1] and consumer.seeks == [(1, 42)]
    assert ingest.stats.paused == frozenset({1})
    assert [r.levelno for r in caplog.records if "prefetch kept" in r.message] == [level]
    ingest.progress.observe(0, 1_000 + drift, 11, None, 1.0)
    ingest._align(1.0)  # caught up: resumed
    assert consumer.resumed == [1] and ingest.stats.paused == frozenset()
