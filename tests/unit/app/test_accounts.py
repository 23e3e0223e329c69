"""The account stage's use of stream time (`streams.app.accounts.AccountStage`): events are
held until the marks read in their partition show every active input partition past them, then
applied in canonical event-time order; only marks advance quiet accounts — to the stream time
the marks give, exactly as the backtest would advance them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from streams.app.accounts import AccountStage
from streams.app.wire import (
    DIRECT,
    encode_batch,
    encode_frame,
    encode_mark,
    encode_relay,
    position,
)
from streams.events.codec import encode_event
from streams.events.parse import event_from_obj
from streams.events.types import Event, Reject
from streams.scoring.engine import Scorer
from tests.unit.app.fakes import FakeTable
from tests.unit.scoring.util import MIN, T0, model, track

MODEL = model(
    """
    name: t
    version: 1
    signals:
      msgs: {count: "Message Sent", window: 1h}
    qualify:
      when: "msgs >= 2"
      exit: "msgs < 2"
    """
)


@dataclass
class Message:
    partition: int
    timestamp: float = 0.0


@dataclass
class Record:
    message: Message
    value: bytes
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


class Stage:
    def __init__(
        self,
        advance_idle_s: float = 0.0,
        grace_ms: int = 0,
        mark_paths: tuple[int, ...] = (DIRECT,),
    ) -> None:
        self.sent: list[dict[str, Any]] = []
        self.late: list[bool] = []
        self.table = FakeTable()
        self.stage = AccountStage(
            Scorer(MODEL),
            self.table,  # type: ignore[arg-type]
            send_transition=lambda account, payload: self.sent.append(orjson.loads(payload)),
            send_dlq=self._dlq,
            flush_producer=self._nothing,
            partitions=1,
            flush_interval_s=3600.0,
            flush_max_events=1_000_000,
            advance_idle_s=advance_idle_s,
            grace_ms=grace_ms,
            mark_paths=mark_paths,
            idle_hold_s=0.0,
            on_late=self.late.append,
        )
        self.offsets: dict[int, int] = {}
        self.records: list[Record] = []

    async def _dlq(self, raw: bytes, reject: Reject, ev: Event) -> None:
        raise AssertionError(f"nothing here is too late: {reject}")

    async def _nothing(self) -> None:
        return None

    def events(
        self,
        *objs: dict[str, Any],
        q: int = 0,
        path: int = DIRECT,
        times: dict[int, dict[int, tuple[int, int, bool]]] | None = None,
        old: bool = False,
    ) -> None:
        """A frame of events read from input partition `q` (through `path`), then the stream
        time `times` (`old`: a batch record of an earlier version)."""
        items = []
        for obj in objs:
            ev = event_from_obj(obj)
            assert isinstance(ev, Event)
            assert ev.account_id is not None
            offset = self.offsets.get(q, 0)
            items.append((ev.account_id, q, position(offset, 0), path, encode_event(ev)))
            self.offsets[q] = offset + 1
        self._record(encode_batch(items) if old else encode_frame(items, times))

    def mark(self, progress: dict[int, tuple[int, int, bool]], old: bool = False) -> None:
        """Input progress: partition -> (latest event time, offset, active)."""
        self._record(encode_mark(progress) if old else encode_frame([], {DIRECT: progress}))

    def _record(self, value: bytes) -> None:
        record = Record(Message(0), value)
        self.records.append(record)
        asyncio.run(self.stage.on_record(record))

    def flush(self) -> None:
        asyncio.run(self.stage.flush())

    def brief(self) -> list[tuple[str, str, str]]:
        return [(t["kind"], t["account_id"], t["trigger"]) for t in self.sent]


def test_events_wait_for_stream_time_and_apply_in_time_order() -> None:
    s = Stage()
    # Input partition 1 is read ahead of partition 0: a's 00:02 message arrives first.
    s.events(track("Message Sent", T0 + 2 * MIN, account="a", mid="m2"), q=1)
    s.events(track("Message Sent", T0, account="a", mid="m0"), q=0)
    assert s.brief() == []  # nothing is applied before stream time passes it
    s.mark({0: (T0, 0, True), 1: (T0 + 2 * MIN, 0, True)})  # W = 00:00: nothing older
    assert s.brief() == [] and s.stage.held_events() == 2
    s.mark({0: (T0 + 3 * MIN, 1, True), 1: (T0 + 2 * MIN, 0, True)})  # W = 00:02: m0 only
    assert s.stage.held_events() == 1 and s.brief() == []
    s.mark({0: (T0 + 3 * MIN, 1, True), 1: (T0 + 4 * MIN, 1, True)})  # W = 00:03: m2 too
    assert s.stage.held_events() == 0 and not s.late
    # Qualified at the second message in time (m2), as the time-sorted history says.
    assert [(t["kind"], t["message_id"], t["occurred_at"]) for t in s.sent] == [
        ("qualified", "m2", "2026-01-05T00:02:00.000Z"),
    ]


def test_ties_apply_in_canonical_order_whatever_the_arrival() -> None:
    for order in (("b", "a"), ("a", "b")):
        s = Stage()
        for q, mid in enumerate(order):
            s.events(track("Message Sent", T0, account="a", mid=mid), q=q)
        s.events(track("Message Sent", T0 - MIN, account="a", mid="first"), q=2)
        s.mark({0: (T0 + MIN, 1, True), 1: (T0 + MIN, 1, True), 2: (T0 + MIN, 1, True)})
        assert [t["message_id"] for t in s.sent] == ["a"], order  # messageId breaks the tie


def test_only_marks_advance_quiet_accounts() -> None:
    s = Stage()
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.events(track("Message Sent", T0 + 5 * 60 * MIN, account="b"))
    s.mark({0: (T0 + 5 * 60 * MIN, 2, True), 1: (T0 + 2 * MIN, 7, True)})
    # a's events are applied; input partition 1 is still at 00:02: a's window has not expired.
    assert s.brief() == [("qualified", "a", "event")]
    assert s.stage.held_events() == 1  # b's event, later than partition 1
    # Partition 1 moved past: stream time passes a's first expiry.
    s.mark({1: (T0 + 2 * 60 * MIN, 9, True)})
    assert s.brief() == [("qualified", "a", "event"), ("disqualified", "a", "time")]
    disqualified = s.sent[-1]
    # At the exact expiry instant (the 1 h window, 1 min buckets), not when the mark came.
    assert disqualified["occurred_at"] == "2026-01-05T01:01:00.000Z"


def test_an_idle_partition_stops_holding_stream_time() -> None:
    s = Stage()
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.mark({0: (T0 + MIN, 1, True), 1: (T0 - 60 * MIN, 3, True)})  # partition 1 quiet, active
    assert s.brief() == [] and s.stage.held_events() == 2
    s.mark({1: (T0 - 60 * MIN, 3, False)})  # past the idleness timeout
    assert s.stage.held_events() == 1  # W = 00:01 (partition 0's latest): the tie waits
    s.mark({0: (T0 + MIN, 1, False)})  # every partition idle: everything goes
    assert s.stage.held_events() == 0 and s.brief() == [("qualified", "a", "event")]


def test_an_event_stream_time_already_passed_is_applied_at_once_as_late() -> None:
    s = Stage()
    s.events(track("Message Sent", T0 + 10 * MIN, account="a"))
    s.mark({0: (T0 + 20 * MIN, 1, True)})
    assert s.stage.held_events() == 0
    s.events(track("Message Sent", T0 + 5 * MIN, account="a"), q=1)  # behind W, behind a
    assert s.late == [True] and s.stage.held_events() == 0
    assert s.brief() == [("qualified", "a", "event")]


def test_relayed_marks_of_every_path_are_waited_for() -> None:
    s = Stage(mark_paths=(DIRECT, 0))
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.mark({0: (T0 + 5 * MIN, 2, True)})
    assert s.brief() == []  # the user stage (path 0) has not said how far it is
    s.events(track("Message Sent", T0 + 30 * 1000, account="a", mid="via-users"), path=0)
    s._record(encode_frame([], {0: {0: (T0 + MIN, 2, True)}}))  # it is at 00:01
    assert s.stage.held_events() == 1  # the 00:01 message
    assert [t["message_id"] for t in s.sent] == ["via-users"] and not s.late


def test_a_frame_applies_its_events_then_its_stream_time() -> None:
    s = Stage(mark_paths=(DIRECT, 0, 1))
    s.events(track("Message Sent", T0, account="a"), times={DIRECT: {0: (T0 + MIN, 1, True)}})
    assert s.stage.held_events() == 1  # the user stage (paths 0, 1) has not reported
    s.events(
        track("Message Sent", T0 + 30 * 1000, account="a", mid="via-users"),
        path=0,
        times={0: {DIRECT: (T0 + MIN, 0, True)}, 1: {DIRECT: (T0, 0, True)}},
    )
    # One frame with the relays of both by-user partitions: W is 00:00 (path 1), so nothing
    # goes yet; path 1 at 00:02 releases both, in time order.
    assert s.stage.held_events() == 2 and s.sent == []
    s._record(encode_frame([], {1: {DIRECT: (T0 + 2 * MIN, 0, True)}}))
    assert s.stage.held_events() == 0
    assert [t["message_id"] for t in s.sent][-1:] == ["via-users"]


def test_records_of_an_earlier_version_are_read() -> None:
    s = Stage(mark_paths=(DIRECT, 0))
    s.events(track("Message Sent", T0, account="a"), old=True)
    s.mark({0: (T0 + MIN, 1, True)}, old=True)
    s._record(encode_relay(0, {0: (T0 + MIN, 2, True)}))
    assert s.stage.held_events() == 0 and s.stage.events_applied == 1


def test_records_are_acked_in_order_once_nothing_of_theirs_is_held() -> None:
    s = Stage()
    s.events(track("Message Sent", T0 + 10 * MIN, account="a"))  # record 0: held
    s.mark({0: (T0, 1, True)})  # record 1
    s.events(track("Message Sent", T0 + 20 * MIN, account="b"), q=1)  # record 2: held
    s.flush()
    assert [r.acked for r in s.records] == [False, False, False]
    s.mark({0: (T0 + 15 * MIN, 1, True), 1: (T0 + 15 * MIN, 1, True)})  # releases record 0
    s.flush()
    assert [r.acked for r in s.records] == [True, True, False, False]
    s.mark({0: (T0 + 15 * MIN, 1, False), 1: (T0 + 20 * MIN, 1, False)})  # all idle
    s.flush()
    assert all(r.acked for r in s.records)


def test_grace_holds_release_and_advances_back() -> None:
    s = Stage(grace_ms=60 * MIN)
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.mark({0: (T0 + 60 * MIN, 2, True)})  # W = 00:00: nothing released yet
    assert s.brief() == []
    s.mark({0: (T0 + 2 * 60 * MIN, 2, True)})  # W = 01:00, before the 01:01 expiry
    assert s.brief() == [("qualified", "a", "event")]
    assert s.stage.stream_time() == T0 + 60 * MIN
    s.mark({0: (T0 + 2 * 60 * MIN + 5 * MIN, 3, True)})
    assert s.brief() == [("qualified", "a", "event"), ("disqualified", "a", "time")]


def test_a_time_tick_of_an_earlier_version_is_ignored() -> None:
    """After an upgrade, the by-account topic may still hold the ticks earlier versions sent
    (b"T"): they neither fail the stage nor move time."""
    s = Stage()
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s._record(b"T")
    assert s.brief() == []
    assert s.stage.stream_time() is None
    assert len(s.stage.work[0].align.pending) == 2  # acked once released and flushed
