"""Shadow models in the account stage (`streams.app.accounts`, `streams.app.lifecycle.versions`):
started at the agreed stream time in the partition, their transitions to their own sink, equal
to the backtest's; kept across a restart; promoted by a switch."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from streams.app.accounts import AccountStage
from streams.app.lifecycle.switchlog import SHADOW, SwitchLog, announcement, report, stop
from streams.app.lifecycle.versions import Versions
from streams.app.wire import DIRECT, encode_frame, position
from streams.backtest.runner import Backtest
from streams.events.codec import encode_event
from streams.events.parse import event_from_obj
from streams.events.types import Event, Reject
from streams.scoring.engine import Scorer
from streams.scoring.shadow import ShadowStart
from streams.scoring.switch import ModelSwitch
from tests.unit.app.fakes import FakeTable
from tests.unit.app.test_accounts import Message, Record
from tests.unit.backtest.test_switch import V1, V2
from tests.unit.scoring.util import DAY, FIXED_NOW, HOUR, T0, model, track

M1, M2 = model(V1), model(V2)


class ShadowStage:
    def __init__(self, log: SwitchLog, table: FakeTable | None = None) -> None:
        self.log = log
        self.live: list[dict[str, Any]] = []
        self.shadow: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.table = table or FakeTable()
        first = log.live[0]
        scorer = Scorer(first.model, lambda: FIXED_NOW, effective_from_ms=first.at_ms)
        self.stage = AccountStage(
            scorer,
            self.table,  # type: ignore[arg-type]
            send_transition=lambda a, p: self.live.append(orjson.loads(p)),
            send_dlq=self._dlq,
            flush_producer=self._nothing,
            partitions=1,
            flush_interval_s=3600.0,
            flush_max_events=1_000_000,
            advance_idle_s=0.0,  # marks advance every account at once (no hop in flight here)
            idle_hold_s=0.0,
            versions=Versions(
                scorer,
                log,
                send_report=lambda i, b, h: self.reports.append(report(i, b, "test", h)),
            ),
            send_shadow=lambda a, p: self.shadow.append(orjson.loads(p)),
        )
        self.offset = 0

    async def _dlq(self, raw: bytes, reject: Reject, ev: Event) -> None:
        raise AssertionError(f"nothing here is too late: {reject}")

    async def _nothing(self) -> None:
        return None

    def feed(self, obj: dict[str, Any]) -> None:
        """One event from input partition 0, then stream time at it."""
        ev = event_from_obj(obj)
        assert isinstance(ev, Event) and ev.account_id is not None
        item = (ev.account_id, 0, position(self.offset, 0), DIRECT, encode_event(ev))
        self.offset += 1
        times = {DIRECT: {0: (ev.ts, self.offset, True)}}
        record = Record(Message(0), encode_frame([item], times))
        asyncio.run(self.stage.on_record(record))

    def time(self, ts: int) -> None:
        record = Record(Message(0), encode_frame([], {DIRECT: {0: (ts, self.offset, True)}}))
        asyncio.run(self.stage.on_record(record))

    def agree(self) -> None:
        """The control log gets this stage's report (the only partition): the change is agreed."""
        assert self.reports, "the stage reported nothing"
        for r in self.reports:
            self.log.apply(r)
        self.reports.clear()


def _events() -> list[dict[str, Any]]:
    out = []
    for day in range(10):
        for i, (account, users) in enumerate((("a", 2), ("b", 1), ("c", 3))):
            for u in range(users if day % 3 else 1):
                ts = T0 + day * DAY + (i * 3 + u) * HOUR
                mid = f"{account}{day}-{u}"
                out.append(
                    track("Message Sent", ts, user=f"{account}{u}", account=account, mid=mid)
                )
    # e: 3 messages by one user on day 1, then nothing (70 points until day 8: a v2 PQL only).
    out += [
        track("Message Sent", T0 + DAY + (10 + i) * HOUR, user="e0", account="e", mid=f"e{i}")
        for i in range(3)
    ]
    return sorted(out, key=lambda e: str(e["timestamp"]))


def _backtest(
    events: list[dict[str, Any]], shadows: list[ShadowStart], switches: list[ModelSwitch]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    live: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    bt = Backtest(
        M1,
        sink=live.append,
        now_ms=lambda: FIXED_NOW,
        received_by_ms=None,
        max_disorder_ms=0,
        switches=switches,
        shadows=shadows,
        shadow_sink=shadow.append,
    )
    for obj in events:
        bt.feed_line(json.dumps(obj).encode())
    bt.finish()
    return live, shadow


def _ids(ts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((t["transition_id"], t["model"]["effective_from"]) for t in ts)


def _shadow_after(first: list[dict[str, Any]]) -> tuple[ShadowStage, SwitchLog, int]:
    """A stage that read `first` under v1, then a shadow of v2 agreed: (it, the log, S)."""
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    s = ShadowStage(log)
    for obj in first:
        s.feed(obj)
    log.apply(announcement(M2, V2, "a", role=SHADOW))
    s.time(iso_ms(first[-1]) + 1)  # a record: the stage freezes and reports
    s.agree()
    return s, log, log.shadows[0].at_ms


def test_a_shadow_starts_at_the_agreed_time_and_equals_the_backtest() -> None:
    events = _events()
    half = len(events) // 2
    s, log, at = _shadow_after(events[:half])
    assert log.pending is None and len(log.shadows) == 1
    for obj in events[half:]:
        s.feed(obj)
    s.time(iso_ms(events[-1]) + 1)
    live, shadow = _backtest(events, [ShadowStart(at, M2)], [])
    assert _ids(s.live) == _ids(live)
    assert s.shadow and _ids(s.shadow) == _ids(shadow)
    assert {t["model"]["version"] for t in s.shadow} == {2}
    # Kept across a restart: a new stage over the same table runs the shadow on.
    asyncio.run(s.stage.flush())
    s2 = ShadowStage(log, s.table)
    s2.offset = s.offset
    # d is new (3 messages, one user: 70 points, a PQL for the shadow only); a is restored.
    more = [
        track("Message Sent", T0 + 11 * DAY + i * HOUR, user=u, account=acct, mid=f"z{i}")
        for i, (acct, u) in enumerate((("a", "a9"), ("d", "d1"), ("d", "d1"), ("d", "d1")))
    ]
    for obj in more:
        s2.feed(obj)
    s2.time(iso_ms(more[-1]) + 1)  # the last event is held until stream time passes it
    live, shadow = _backtest(events + more, [ShadowStart(at, M2)], [])
    assert _ids(s.live + s2.live) == _ids(live)
    assert _ids(s.shadow + s2.shadow) == _ids(shadow)
    assert ("qualified", "d") in [(t["kind"], t["account_id"]) for t in s2.shadow]
    assert "d" not in {t["account_id"] for t in s2.live if t["kind"] == "qualified"}


def test_promotion_is_a_switch_that_takes_the_shadow_decisions() -> None:
    events = _events()
    third = len(events) // 3
    s, log, at_s = _shadow_after(events[:third])
    for obj in events[third : 2 * third]:
        s.feed(obj)
    log.apply(announcement(M2, V2, "a"))  # promotion: the same definition, live
    s.time(iso_ms(events[2 * third - 1]) + 1)
    s.agree()
    assert log.current is not None and log.current.model.version == 2
    at_t = log.current.at_ms
    assert log.running_shadows() == []
    for obj in events[2 * third :]:
        s.feed(obj)
    s.time(iso_ms(events[-1]) + 1)
    live, shadow = _backtest(events, [ShadowStart(at_s, M2)], [ModelSwitch(at_t, M2)])
    assert _ids(s.live) == _ids(live)
    assert _ids(s.shadow) == _ids(shadow)
    assert all(iso_ms_of(t) < at_t for t in s.shadow)  # the shadow ends at its promotion


def iso_ms(obj: dict[str, Any]) -> int:
    ev = event_from_obj(obj)
    assert isinstance(ev, Event)
    return ev.ts


def iso_ms_of(t: dict[str, Any]) -> int:
    from streams.events.timestamps import iso_to_epoch_ms

    ms = iso_to_epoch_ms(t["occurred_at"])
    assert ms is not None
    return ms


def test_a_stopped_shadow_sends_nothing_more_and_its_version_goes_live_decided_afresh() -> None:
    events = _events()

    def before(t: int) -> int:
        return sum(1 for e in events if iso_ms(e) < t)

    start, stopped, promoted = before(T0 + DAY // 2), before(T0 + 2 * DAY), before(T0 + 9 * DAY)
    s, log, at_s = _shadow_after(events[:start])
    for obj in events[start:stopped]:
        s.feed(obj)
    s.time(T0 + 2 * DAY)  # everything read so far applied
    sent = len(s.shadow)
    assert ("qualified", "e") in [(t["kind"], t["account_id"]) for t in s.shadow]
    log.apply(stop(2, f"shadow:{M2.fingerprint}", "ops"))
    for obj in events[stopped:promoted]:
        s.feed(obj)
    assert len(s.shadow) == sent  # stopped: nothing more, from the next record on
    assert s.stage.work[0].shadows == set()
    # Its version goes live after all: decided from the live status at the switch, as a plain
    # switch. The stopped shadow's last decisions are stale (e's messages expired on day 8,
    # the stopped shadow never saw it) and are not promoted.
    log.apply(announcement(M2, V2, "a"))
    s.time(iso_ms(events[promoted - 1]) + 1)
    s.agree()
    at_t = log.live[-1].at_ms
    for obj in events[promoted:]:
        s.feed(obj)
    s.time(iso_ms(events[-1]) + 1)
    live, _ = _backtest(events, [], [ModelSwitch(at_t, M2)])
    assert _ids(s.live) == _ids(live)
    assert not s.stage.cache["e"].pql
    assert len(s.shadow) == sent
    assert at_s < at_t
