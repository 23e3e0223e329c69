"""Records on the internal topics (`<app>-by-user`, `<app>-by-account`).

Every record written is a *frame*: a batch of routed events, then stream time — the progress of
one or more *paths* (see `streams.app.watermark`): the ingest's input progress (path `DIRECT`,
written into every by-account and by-user partition, also as a frame without events when a
partition got none for a while: a quiet partition then still gets a record to flush on), or
how far a by-user partition's user stage has released (path = that partition; only into
by-account partitions). The time a frame carries covers its own events, which come first.

Earlier versions wrote separate batch, mark and relayed-mark records: still read, so a topic
written by them is taken over as it is. The stages ignore any other kind (the time ticks of
older versions). Upgrading: stop every worker of an app id, then start the new version (an
older worker cannot read frames).

Batching is what makes the worker fast: Faust's per-record path costs about 0.5 ms of the
event loop (measured: fetch, dispatch, stream, ack), so the ingest stage groups the events
bound for one partition per poll into one record, with the stream time of that poll, and the
stateful agents pay that cost once per batch.

Every item names where its event came from — input partition, input offset, and the path it
took (`DIRECT`, or the by-user partition it went through) — so the account stage can tell an
event it already applied from a new one when a stage re-sends after a crash (at-least-once):
per account and (input partition, path) positions only grow.
"""

from __future__ import annotations

import msgspec

from streams.app.watermark import DIRECT as DIRECT  # re-exported: the path of direct items
from streams.app.watermark import Progress

FRAME = b"F"
BATCH = b"B"  # earlier versions (read, not written): events only
MARK = b"M"  # earlier versions: the ingest's progress only
RELAY = b"R"  # earlier versions: one user stage partition's released progress only
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
# Stream time in a frame: path -> progress.
Times = dict[int, Progress]
_decode_frame = msgspec.msgpack.Decoder(tuple[list[Item], Times]).decode


def encode_frame(items: list[Item], times: Times | None = None) -> bytes:
    """Events, then the stream time of each path in `times` (none: events only)."""
    return FRAME + _encode((items, times or {}))


def decode(data: bytes) -> tuple[list[Item], Times] | None:
    """(events, stream time per path) of any record kind written now or before; None for a
    kind the stages ignore."""
    kind = data[:1]
    body = memoryview(data)[1:]
    if kind == FRAME:
        return _decode_frame(body)
    if kind == BATCH:
        return _decode(body), {}
    if kind == MARK:
        return [], {DIRECT: _decode_mark(body)}
    if kind == RELAY:
        path, progress = _decode_relay(body)
        return [], {path: progress}
    return None


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


MAX_ITEMS_PER_RECORD = 500  # keeps records well under Kafka's 1 MB default message limit


def frames(items: list[Item] | None, times: Times | None) -> list[bytes]:
    """The records that carry `items` into one partition, then `times`: split so no record
    grows past the broker's message size limit, the time on the last; the time alone when there
    are no items; nothing when there is neither."""
    if not items:
        return [encode_frame([], times)] if times else []
    pieces = [
        items[i : i + MAX_ITEMS_PER_RECORD] for i in range(0, len(items), MAX_ITEMS_PER_RECORD)
    ]
    return [encode_frame(piece) for piece in pieces[:-1]] + [encode_frame(pieces[-1], times)]
