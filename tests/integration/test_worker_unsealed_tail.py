"""A changelog that ends with records written after the last seal (a crash or stop between a
flush's writes and its seal) restores on the embedded broker: the broker's "latest offset"
then falls short of the real end, and without a fresh seal Faust's recovery refuses the
restored persisted offset (ConsistencyError, the worker exits). Found by `make bench`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.broker.embedded import EmbeddedBroker
from streams.io.kafka_config import consumer_config
from streams.io.read import read_partition
from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    WorkerNames,
    Workers,
    backtest,
    collect,
    diff_report,
    name_accounts,
    produce,
    transition_key,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"


def _append_unsealed_tail(bootstrap: str, topic: str) -> tuple[int, int]:
    """Re-append the last state record of a partition three times in one batch; return the
    partition's real end and the broker's ListOffsets "latest" afterwards."""
    for part in range(PARTITIONS):
        records = [m for m in read_partition(bootstrap, topic, part, 0) if m.value()]
        if records:
            break
    else:
        raise AssertionError(f"{topic} is empty")
    last = records[-1]
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200})
    for _ in range(3):
        p.produce(topic, last.value(), last.key(), partition=part)
    assert p.flush(10) == 0
    end = sum(1 for _ in read_partition(bootstrap, topic, part, 0))
    c = Consumer(consumer_config(bootstrap, None))
    try:
        _, latest = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
    finally:
        c.close()
    return end, latest


@pytest.fixture()
def broker(embedded_broker: EmbeddedBroker) -> EmbeddedBroker:
    """Only the embedded broker: seals are its workaround (Kafka's latest offset is exact)."""
    return embedded_broker


def test_restore_after_an_unsealed_changelog_tail(
    broker: object,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    events = name_accounts(generate(accounts=12, days=6, seed=5))
    cut = len(events) // 3
    first = write_jsonl(tmp_path / "first.jsonl", events[:cut])
    rest = write_jsonl(tmp_path / "rest.jsonl", events[cut:])
    expected_first = backtest(MODEL, first, out_dir=tmp_path)
    expected = backtest(MODEL, first, rest, out_dir=tmp_path)

    names = WorkerNames.unique("unsealed")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    w = workers.start(MODEL, names)
    produce(bootstrap, names.input_topic, first)
    collect(reader, expected_first, timeout=60, settle=w.settle)
    assert w.stop() == 0, w.log_tail()

    changelog = f"{names.app_id}-state-accounts-changelog"
    end, latest = _append_unsealed_tail(bootstrap, changelog)
    # The scenario this test is about: the broker's "latest" is short of the real end.
    assert latest < end, (latest, end)

    shutil.rmtree(w.data_dir)
    w.start().wait_ready(timeout=90)  # exits with ConsistencyError without the fresh seal
    produce(bootstrap, names.input_topic, rest)
    # A worker restored from a wiped data dir can be quiet for a while on a loaded machine.
    got = collect(reader, expected, timeout=90, settle=w.settle, give_up_idle=20)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )
