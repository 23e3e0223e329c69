"""The user stage (`streams.app.users.UserStage`): holds events until the ingest's marks pass
them, routes them in canonical event-time order whatever input partition they came from,
relays how far it released, skips input it routed before a restart, acks in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from streams.app.users import UserStage
from streams.app.watermark import DIRECT
from streams.app.wire import (
    UNDELIVERED,
    decode,
    encode_batch,
    encode_frame,
    encode_mark,
)
from streams.events.codec import decode_event
from streams.events.types import Reject
from tests.unit.app.fakes import FakeTable
from tests.unit.scoring.util import MIN, T0, iso


@dataclass
class Message:
    partition: int


@dataclass
class Record:
    message: Message
    value: bytes


class Harness:
    def __init__(self, table: FakeTable | None = None) -> None:
        self.table = table or FakeTable()
        self.sent: list[tuple[int, bytes]] = []
        self.rejects: list[Reject] = []
        self.stage = UserStage(
            frozenset({"title"}),
            self.table,
            send=self._send,
            send_dlq=self._dlq,
            partitions=2,
            idle_hold_s=0.0,
        )
        self.acked: list[Record] = []

    def _send(self, part: int, value: bytes) -> None:
        self.sent.append((part, value))

    async def _dlq(self, raw: bytes, key: bytes | None, reject: Reject) -> None:
        self.rejects.append(reject)

    def record(self, value: bytes) -> Record:
        rec = Record(Message(0), value)
        self.acked += asyncio.run(self.stage.on_record(rec))
        return rec

    def batch(self, *items: tuple[int, int, dict[str, Any]], old: bool = False) -> Record:
        """Items: (input partition, offset, event object); `old`: as a batch record of an
        earlier version."""
        wired = [
            (obj["userId"], q, offset, UNDELIVERED, orjson.dumps(obj)) for q, offset, obj in items
        ]
        return self.record(encode_batch(wired) if old else encode_frame(wired))

    def mark(self, progress: dict[int, tuple[int, int, bool]], old: bool = False) -> Record:
        return self.record(encode_mark(progress) if old else encode_frame([], {DIRECT: progress}))

    def frames(self) -> list[tuple[int, list[Any], dict[int, Any]]]:
        out = []
        for part, value in self.sent:
            frame = decode(value)
            assert frame is not None
            out.append((part, *frame))
        return out

    def delivered(self) -> list[tuple[str, str]]:
        return [
            (account, decode_event(data).message_id)
            for _part, items, _times in self.frames()
            for account, _q, _pos, _path, data in items
        ]

    def relays(self, path: int = 0) -> list[dict[int, tuple[int, int, bool]]]:
        """The released progress of by-user partition `path`, as relayed, in order."""
        return [times[path] for _part, _items, times in self.frames() if path in times]


def group(ts: int, mid: str, account: str = "acme") -> dict[str, Any]:
    return {
        "type": "group",
        "userId": "u1",
        "groupId": account,
        "timestamp": iso(ts),
        "messageId": mid,
    }


def track(ts: int, mid: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Message Sent",
        "userId": "u1",
        "timestamp": iso(ts),
        "messageId": mid,
    }


def test_a_group_call_read_late_still_routes_the_tracks_after_it() -> None:
    h = Harness()
    # Input partition 1 is read first: the user's track at 00:05 arrives before the group call
    # at 00:01 that makes it an acme event.
    h.batch((1, 0, track(T0 + 5 * MIN, "t1")))
    h.batch((0, 0, group(T0 + MIN, "g1")))
    assert h.delivered() == [] and h.rejects == []
    h.mark({0: (T0 + MIN, 0, True), 1: (T0 + 5 * MIN, 0, True)})  # W = 00:01: nothing yet
    assert h.delivered() == []
    h.mark({0: (T0 + 10 * MIN, 3, True), 1: (T0 + 9 * MIN, 2, True)})  # W = 00:09
    assert h.delivered() == [("acme", "g1"), ("acme", "t1")] and h.rejects == []


def test_relays_say_how_far_it_released_and_acks_wait_for_held_events() -> None:
    h = Harness()
    first = h.batch((0, 0, track(T0 + 5 * MIN, "t1")), (0, 1, group(T0 + MIN, "g1")))
    assert h.acked == []
    h.mark({0: (T0 + 3 * MIN, 1, True)})  # releases g1 only: t1 still held
    # One relay into each by-account partition, g1 riding in the frame of its partition.
    assert h.relays() == [{DIRECT: (T0 + 3 * MIN, 0, True)}] * 2
    assert sorted(len(items) for _part, items, _times in h.frames()) == [0, 1]
    assert h.delivered() == [("acme", "g1")] and h.acked == []
    h.mark({0: (T0 + 3 * MIN, 1, False)})  # idle: everything goes
    assert h.delivered() == [("acme", "g1"), ("acme", "t1")]
    assert h.acked[0] is first and len(h.acked) == 3


def test_input_routed_before_a_restart_is_not_routed_again() -> None:
    h = Harness()
    h.batch((0, 0, group(T0, "g1")), (0, 1, track(T0 + MIN, "t1")))
    h.mark({0: (T0 + MIN, 1, False)})
    assert h.delivered() == [("acme", "g1"), ("acme", "t1")]
    # The user moves to another account; then a crash: the same input is read again.
    h.batch((0, 2, group(T0 + 2 * MIN, "g2", account="globex")))
    h.mark({0: (T0 + 2 * MIN, 2, False)})
    again = Harness(h.table)
    again.batch((0, 0, group(T0, "g1")), (0, 1, track(T0 + MIN, "t1")))
    again.mark({0: (T0 + 2 * MIN, 2, False)})
    assert again.delivered() == []  # not re-routed to globex (nor to acme twice)


def test_a_track_of_a_user_in_no_group_is_rejected() -> None:
    h = Harness()
    h.batch((0, 0, track(T0, "t1")))
    h.mark({0: (T0, 0, False)})
    assert [r.reason.value for r in h.rejects] == ["missing_account"] and h.delivered() == []


def test_relays_wait_for_the_other_partitions_or_the_worker_timer() -> None:
    h = Harness()
    h.stage.partitions = 2
    h.batch((0, 0, group(T0 + MIN, "g1")))  # by-user partition 0: events, no time yet
    other = Record(Message(1), encode_frame([], {DIRECT: {0: (T0, 0, True)}}))
    h.acked += asyncio.run(h.stage.on_record(other))  # by-user partition 1 reports first
    assert h.sent == [] and h.stage.pending  # waiting for partition 0 (or the timer)
    h.mark({0: (T0 + 3 * MIN, 1, True)})  # partition 0 too: one frame per by-account partition
    assert len(h.sent) == 2 and not h.stage.pending
    assert h.relays(0) == [{DIRECT: (T0 + 3 * MIN, 0, True)}] * 2
    assert h.relays(1) == [{DIRECT: (T0, 0, True)}] * 2
    assert h.delivered() == [("acme", "g1")]
    # Only partition 1 reports: nothing goes until the worker's timer calls send_pending.
    h.acked += asyncio.run(h.stage.on_record(other))
    assert len(h.sent) == 2 and h.stage.pending
    h.stage.send_pending()
    assert len(h.sent) == 4 and h.relays(1) == [{DIRECT: (T0, 0, True)}] * 4


def test_a_revoked_partition_sends_nothing_more_of_what_it_routed() -> None:
    h = Harness()
    h.stage.partitions = 2
    other = Record(Message(1), encode_frame([], {DIRECT: {0: (T0, 0, True)}}))
    h.acked += asyncio.run(h.stage.on_record(other))  # partition 1 known, not reported since
    h.sent.clear()
    h.stage.send_pending()
    h.batch((0, 0, group(T0 + MIN, "g1")))
    h.mark({0: (T0 + 3 * MIN, 1, True)})  # g1 routed, waiting for partition 1 to report
    assert h.sent == [] and h.stage.pending
    h.stage.forget({0})  # its new owner routes g1 again
    h.stage.send_pending()
    assert h.delivered() == [] and h.relays(0) == []


def test_records_of_an_earlier_version_are_read() -> None:
    h = Harness()
    h.batch((0, 0, group(T0 + MIN, "g1")), old=True)
    h.mark({0: (T0 + 3 * MIN, 1, False)}, old=True)
    assert h.delivered() == [("acme", "g1")]
