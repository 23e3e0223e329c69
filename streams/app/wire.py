"""Records on the internal topics (`<app>-by-user`, `<app>-by-account`).

A record is a *batch* of routed events, a *mark* of stream time (the ingest stage's input
progress, written into every by-account and by-user partition, see `streams.app.watermark`;
marks also give a quiet partition a record to flush on), or a *relayed mark* (the user stage's
copy of a mark it read, into every by-account partition, naming the by-user partition it came
through). The stages ignore any other kind (the time ticks of earlier versions, still in a
topic after an upgrade).

Batching is what makes the worker fast: Faust's per-record path costs tens of microseconds, so
the ingest stage groups the events bound for one partition into one record and the stateful
agents pay that cost once per batch.

Every item names where its event came from — input partition, input offset, and the path it
took (`DIRECT`, or the by-user partition it went through) — so the account stage can tell an
event it already applied from a new one when a stage re-sends after a crash (at-least-once):
per account and (input partition, path) positions only grow.
"""

from __future__ import annotations

import msgspec

from streams.app.watermark import DIRECT as DIRECT  # re-exported: the path of direct items
from streams.app.watermark import Progress

BATCH = b"B"
MARK = b"M"
RELAY = b"R"
# On a by-user item: a group call whose synthetic identify the ingest already delivered.
SYNTHETIC_DELIVERED = -2
# On a by-user item: the ingest routed nothing of it (no local routing, `--input-key any`):
# the user stage routes it whole (`streams.events.routing.route_user`).
UNDELIVERED = -3

# (routing key: account or user id, input partition, position, path, event bytes). By-account
# items carry an encoded Event and position = `position(input offset, k)`; by-user items carry
# the original input bytes and the input offset.
Item = tuple[str, int, int, int, bytes]

# One input event can make several deliveries to one account (a group call and its synthetic
# identify): each gets its own position, in delivery order.
MAX_DELIVERIES = 8


def position(offset: int, k: int) -> int:
    return offset * MAX_DELIVERIES + k


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Item]).decode
_decode_mark = msgspec.msgpack.Decoder(Progress).decode
_decode_relay = msgspec.msgpack.Decoder(tuple[int, Progress]).decode


def encode_batch(items: list[Item]) -> bytes:
    return BATCH + _encode(items)


def decode_batch(data: bytes) -> list[Item]:
    if data[:1] != BATCH:
        raise ValueError(f"not a batch record (starts with {data[:1]!r})")
    return _decode(memoryview(data)[1:])


def encode_mark(progress: Progress) -> bytes:
    return MARK + _encode(progress)


def decode_mark(data: bytes) -> Progress:
    if data[:1] != MARK:
        raise ValueError(f"not a mark record (starts with {data[:1]!r})")
    return _decode_mark(memoryview(data)[1:])


def encode_relay(path: int, progress: Progress) -> bytes:
    return RELAY + _encode((path, progress))


def decode_relay(data: bytes) -> tuple[int, Progress]:
    """(the by-user partition the mark came through, its progress)."""
    if data[:1] != RELAY:
        raise ValueError(f"not a relayed mark (starts with {data[:1]!r})")
    return _decode_relay(memoryview(data)[1:])


def chunks(items: list[Item], max_items: int) -> list[list[Item]]:
    """Split so no record grows past the broker's message size limit."""
    return [items[i : i + max_items] for i in range(0, len(items), max_items)]
