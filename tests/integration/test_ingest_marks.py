"""Stream time travels in band: against the real embedded broker, every mark the ingest stage
writes into a by-account partition comes after every event it covers that was routed there.

This is what keeps stream time from overtaking an account's own events in flight between the
stages (`streams.app.watermark`): the account stage advances quiet accounts only on marks, and
reads a partition in order.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Producer

from streams.app.ingest import Ingest, IngestConfig, IngestStats, partition_of
from streams.app.wire import DIRECT, FRAME, MAX_DELIVERIES, decode
from streams.broker.embedded import EmbeddedBroker
from streams.io.kafka_config import producer_config
from streams.io.read import read_to_end
from streams.io.topics import TopicSpec, ensure_topics

N = 4  # partitions of every topic here
ACCOUNTS = [f"acct-{i}" for i in range(24)]
ROUNDS, PER_ROUND = 6, 120
T0 = 1_790_000_000_000


def _event(i: int) -> tuple[str, bytes]:
    account = ACCOUNTS[i % len(ACCOUNTS)]
    body = {
        "type": "track",
        "event": "Message Sent",
        "userId": f"u-{i % 7}",
        "messageId": f"m-{i}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((T0 + i * 1000) / 1000)),
        "context": {"groupId": account},
    }
    return account, orjson.dumps(body)


def ingest_config(
    broker: EmbeddedBroker, name: Callable[[str], str], **settings: Any
) -> IngestConfig:
    """An ingest stage's configuration over fresh topics of `N` partitions (created here)."""
    config = IngestConfig(
        broker=broker.bootstrap,
        security=None,
        group=name("group"),
        instance_id=None,
        session_timeout_ms=6000,
        fetch_wait_ms=20,
        partitions=N,
        input_topic=name("in"),
        dlq_topic=name("dlq"),
        by_account_topic=name("by-account"),
        by_user_topic=name("by-user"),
        users_topic=name("users"),
        trait_keys=frozenset(),
        **settings,
    )
    topics = [config.input_topic, config.dlq_topic, config.by_account_topic]
    topics += [config.by_user_topic, config.users_topic]
    ensure_topics(broker.bootstrap, [TopicSpec(t, N) for t in topics])
    return config


def test_every_mark_follows_the_events_it_covers(
    broker: EmbeddedBroker, new_topic_name: Callable[[str], str]
) -> None:
    config = ingest_config(
        broker,
        new_topic_name,
        mark_interval_s=0.0,  # a mark after every poll: as many interleavings as possible
        idle_s=0.2,  # drained partitions turn idle before the last mark
    )
    stats = IngestStats()
    ingest = Ingest(config, stats)
    runner = threading.Thread(target=ingest.run, daemon=True)
    runner.start()
    # By-account partition -> the input records (partition, offset) routed to it.
    routed: dict[int, set[tuple[int, int]]] = defaultdict(set)
    producer = Producer(producer_config(broker.bootstrap))
    delivered: list[tuple[str, int, int]] = []

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        delivered.append((msg.key().decode(), msg.partition(), msg.offset()))

    try:
        deadline = time.monotonic() + 30
        while stats.assigned != frozenset(range(N)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats.assigned == frozenset(range(N)), "the ingest never joined its group"
        for r in range(ROUNDS):  # in rounds, so marks fall between batches
            for i in range(r * PER_ROUND, (r + 1) * PER_ROUND):
                account, value = _event(i)
                producer.produce(
                    config.input_topic, value, key=account.encode(), on_delivery=on_delivery
                )
            assert producer.flush(30) == 0
            time.sleep(0.3)
        deadline = time.monotonic() + 60
        while stats.consumed < ROUNDS * PER_ROUND and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats.consumed == ROUNDS * PER_ROUND, f"ingest read {stats.consumed}"
        time.sleep(0.8)  # a last mark after everything is read and idle
    finally:
        ingest.stop()
        runner.join(30)
    assert not runner.is_alive()
    for account, q, offset in delivered:
        routed[partition_of(account, N)].add((q, offset))
    last_offset = {q: max(o for _, p, o in delivered if p == q) for q in range(N)}

    starts = {(config.by_account_topic, p): 0 for p in range(N)}
    records: dict[int, list[bytes]] = defaultdict(list)
    for batch in read_to_end(broker.bootstrap, starts):
        for m in batch:
            records[m.partition()].append(m.value())

    early_marks = 0
    for p in range(N):
        seen: set[tuple[int, int]] = set()
        marks: list[dict[int, tuple[int, int, bool]]] = []
        for value in records[p]:
            frame = decode(value)
            assert frame is not None and value[:1] == FRAME
            items, times = frame
            for _account, q, pos, _path, _data in items:
                seen.add((q, pos // MAX_DELIVERIES))
            assert set(times) <= {DIRECT}
            if times:
                marks.append(times[DIRECT])
                for q, (_latest, offset, _active) in times[DIRECT].items():
                    covered = {k for k in routed[p] if k[0] == q and k[1] <= offset}
                    missing = covered - seen
                    assert not missing, f"a mark in partition {p} came before {sorted(missing)}"
                    if offset < last_offset[q]:
                        early_marks += 1
        assert seen == routed[p], f"partition {p} did not get every event routed to it"
        assert marks
        final = marks[-1]
        assert {q: (o, b) for q, (_, o, b) in final.items()} == {
            q: (last_offset[q], False) for q in range(N)
        }
        assert (
            max(latest for latest, _, _ in final.values()) == T0 + (ROUNDS * PER_ROUND - 1) * 1000
        )
    # Marks did interleave with events still to come (or the check above proved nothing).
    assert early_marks > 0
