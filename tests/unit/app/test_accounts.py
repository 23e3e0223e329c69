"""The account stage's use of stream time (`streams.app.accounts.AccountStage`): events apply
in record order, and only marks advance quiet accounts — to the stream time the marks read so
far in that partition give, exactly as the backtest would advance them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from streams.app.accounts import AccountStage
from streams.app.wire import DIRECT, encode_batch, encode_mark, position
from streams.events.codec import encode_event
from streams.events.parse import event_from_obj
from streams.events.types import Event, Reject
from streams.scoring.engine import Scorer
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


class FakeTable:
    """The slice of `TableWriter` the stage uses, over a dict."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, str], bytes] = {}

    def get(self, partition: int, key: str) -> bytes | None:
        return self.data.get((partition, key))

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[(partition, key)] = value

    async def commit(self, partitions: Iterable[int]) -> None:
        return None

    def forget(self, partitions: Iterable[int]) -> None:
        return None

    def active_partitions(self) -> list[int]:
        return sorted({p for p, _ in self.data})

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        return ((k, v) for (p, k), v in self.data.items() if p == partition)


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
    def __init__(self, advance_idle_s: float = 0.0, grace_ms: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
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
        )
        self.offset = 0

    async def _dlq(self, raw: bytes, reject: Reject, ev: Event) -> None:
        raise AssertionError(f"nothing here is too late: {reject}")

    async def _nothing(self) -> None:
        return None

    def events(self, *objs: dict[str, Any]) -> None:
        items = []
        for obj in objs:
            ev = event_from_obj(obj)
            assert isinstance(ev, Event)
            assert ev.account_id is not None
            items.append((ev.account_id, 0, position(self.offset, 0), DIRECT, encode_event(ev)))
            self.offset += 1
        self._record(encode_batch(items))

    def mark(self, progress: dict[int, tuple[int, int, bool]]) -> None:
        self._record(encode_mark(progress))

    def _record(self, value: bytes) -> None:
        asyncio.run(self.stage.on_record(Record(Message(0), value)))

    def brief(self) -> list[tuple[str, str, str]]:
        return [(t["kind"], t["account_id"], t["trigger"]) for t in self.sent]


def test_only_marks_advance_quiet_accounts() -> None:
    s = Stage()
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    # An event of another account far later does not move account a: only its own events and
    # marks do (the batch alone says nothing of other input still in flight).
    s.events(track("Message Sent", T0 + 5 * 60 * MIN, account="b"))
    assert s.brief() == [("qualified", "a", "event")]
    # Input partition 1 is still behind at T0 + 30 min: a's window has not expired yet.
    s.mark({0: (T0 + 5 * 60 * MIN, 2, False), 1: (T0 + 30 * MIN, 7, True)})
    assert s.brief() == [("qualified", "a", "event")]
    # Partition 1 caught up: stream time is the latest event time, past a's first expiry.
    s.mark({1: (T0 + 2 * 60 * MIN, 9, False)})
    assert s.brief() == [("qualified", "a", "event"), ("disqualified", "a", "time")]
    disqualified = s.sent[-1]
    # At the exact expiry instant (the 1 h window, 1 min buckets), not when the mark came.
    assert disqualified["occurred_at"] == "2026-01-05T01:01:00.000Z"


def test_an_event_before_the_mark_is_applied_before_time_moves() -> None:
    s = Stage()
    s.events(track("Message Sent", T0, account="a"))
    s.events(track("Message Sent", T0 + 59 * MIN, account="a"))  # still in flight elsewhere
    s.mark({0: (T0 + 70 * MIN, 3, False)})
    # Qualified at the second event; the first one expires at 01:01, leaving one message.
    assert [(t["kind"], t["occurred_at"]) for t in s.sent] == [
        ("qualified", "2026-01-05T00:59:00.000Z"),
        ("disqualified", "2026-01-05T01:01:00.000Z"),
    ]


def test_a_recently_seen_account_waits_for_a_later_mark() -> None:
    s = Stage(advance_idle_s=3600.0)
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.mark({0: (T0 + 3 * 60 * MIN, 2, False)})
    assert s.brief() == [("qualified", "a", "event")]
    s.stage.advance_idle_s = 0.0
    s.mark({0: (T0 + 3 * 60 * MIN, 2, False)})
    assert s.brief() == [("qualified", "a", "event"), ("disqualified", "a", "time")]


def test_grace_holds_advances_back() -> None:
    s = Stage(grace_ms=60 * MIN)
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s.mark({0: (T0 + 2 * 60 * MIN, 2, False)})  # W = 01:00, before the 01:01 expiry
    assert s.brief() == [("qualified", "a", "event")]
    assert s.stage.stream_time() == T0 + 60 * MIN
    s.mark({0: (T0 + 2 * 60 * MIN + 5 * MIN, 3, False)})
    assert s.brief() == [("qualified", "a", "event"), ("disqualified", "a", "time")]


def test_a_time_tick_of_an_earlier_version_is_ignored() -> None:
    """After an upgrade, the by-account topic may still hold the ticks earlier versions sent
    (b"T"): they neither fail the stage nor move time."""
    s = Stage()
    s.events(track("Message Sent", T0, account="a"), track("Message Sent", T0 + MIN, account="a"))
    s._record(b"T")
    assert s.brief() == [("qualified", "a", "event")]
    assert s.stage.stream_time() is None
    assert len(s.stage.work[0].pending) == 2  # acked with the rest at the next flush
