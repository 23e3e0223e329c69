"""De-duplication by transition_id for `pql notify` (`streams.notify.service`): the ids a
destination delivered, per partition, and reading them back from the topic after a restart or a
rebalance (every record before the committed offset was delivered or dead-lettered)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import orjson

from streams.io.kafka_config import consumer_config

LOOKBACK_IDLE_S = 5.0  # a read-back that gets nothing for this long is over (records gone)


class Seen:
    """The last `depth` transition ids of one partition, oldest first."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.ids: OrderedDict[str, None] = OrderedDict()

    def add(self, tid: str) -> None:
        self.ids[tid] = None
        self.ids.move_to_end(tid)
        while len(self.ids) > self.depth:
            self.ids.popitem(last=False)

    def __contains__(self, tid: object) -> bool:
        return tid in self.ids


def decode_transition(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        t = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(t, dict) or not isinstance(t.get("transition_id"), str):
        return None
    return t


def read_back(
    bootstrap: str,
    security: dict[str, str] | None,
    topic: str,
    depth: int,
    ends: dict[int, int],
    seen: dict[int, Seen],
) -> int:
    """Read the `depth` records before each committed offset (`ends`: partition -> offset) into
    `seen`; how many ids were read."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer(consumer_config(bootstrap, None, security))
    try:
        reader.assign([TopicPartition(topic, p, max(0, end - depth)) for p, end in ends.items()])
        left = {p for p, end in ends.items() if end > 0}
        count = 0
        idle_since = time.monotonic()
        while left and time.monotonic() - idle_since < LOOKBACK_IDLE_S:
            msg = reader.poll(0.5)
            if msg is None or msg.error():
                continue
            idle_since = time.monotonic()
            p, offset = msg.partition(), msg.offset() or 0
            if p not in left:
                continue
            if offset >= ends[p]:
                left.discard(p)
                continue
            t = decode_transition(msg.value())
            if t is not None:
                seen.setdefault(p, Seen(depth)).add(t["transition_id"])
                count += 1
            if offset >= ends[p] - 1:
                left.discard(p)
        return count
    finally:
        reader.close()
