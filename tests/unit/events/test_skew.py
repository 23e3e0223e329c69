"""The clock-skew guard of `streams.events.parse`: a `timestamp` from a wrong device clock is
corrected (Segment's rule), clamped to `receivedAt`, or — live, without `receivedAt` —
rejected as future_timestamp; it never becomes the event time."""

from __future__ import annotations

from typing import Any

import orjson

from streams.events.parse import CLAMPED, CORRECTED, MAX_FUTURE_SKEW_MS, parse_event
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, Reject, RejectReason

RECEIVED = "2026-03-01T12:00:00.000Z"
RECEIVED_MS = iso_to_epoch_ms(RECEIVED)
FIVE_YEARS_AHEAD = "2031-03-01T12:00:00.000Z"


def track(**over: Any) -> bytes:
    obj = {
        "type": "track",
        "event": "Message Sent",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": RECEIVED,
        "context": {"groupId": "acme"},
    }
    obj.update(over)
    return orjson.dumps(obj)


def event(raw: bytes, now_ms: float | None = None) -> Event:
    ev = parse_event(raw, now_ms)
    assert isinstance(ev, Event), ev
    return ev


def test_a_sane_timestamp_is_kept() -> None:
    ev = event(track(timestamp="2026-03-01T11:59:58.000Z", receivedAt=RECEIVED))
    assert ev.ts == RECEIVED_MS - 2000 and ev.adjusted is None


def test_small_skew_within_the_tolerance_is_kept() -> None:
    ahead = "2026-03-01T12:04:00.000Z"  # 4 minutes ahead of receivedAt: device clocks differ
    ev = event(track(timestamp=ahead, receivedAt=RECEIVED))
    assert ev.ts == iso_to_epoch_ms(ahead) and ev.adjusted is None


def test_far_future_is_corrected_by_segments_rule() -> None:
    # The device clock is 5 years ahead; it sent the event 3 s after it happened (by its clock).
    ev = event(
        track(
            timestamp=FIVE_YEARS_AHEAD,
            originalTimestamp=FIVE_YEARS_AHEAD,
            sentAt="2031-03-01T12:00:03.000Z",
            receivedAt=RECEIVED,
        )
    )
    assert ev.adjusted == CORRECTED
    assert ev.ts == RECEIVED_MS - 3000


def test_far_future_without_sent_at_is_clamped_to_received_at() -> None:
    ev = event(track(timestamp=FIVE_YEARS_AHEAD, receivedAt=RECEIVED))
    assert (ev.ts, ev.adjusted) == (RECEIVED_MS, CLAMPED)


def test_a_correction_that_still_lands_in_the_future_is_clamped() -> None:
    # sentAt before originalTimestamp: the correction itself would land past receivedAt.
    ev = event(
        track(
            timestamp=FIVE_YEARS_AHEAD,
            originalTimestamp=FIVE_YEARS_AHEAD,
            sentAt="2026-03-01T12:00:00.000Z",
            receivedAt=RECEIVED,
        )
    )
    assert (ev.ts, ev.adjusted) == (RECEIVED_MS, CLAMPED)


def test_unusable_received_at_is_ignored() -> None:
    for bad in ("yesterday", 12, None):
        ev = event(track(timestamp=FIVE_YEARS_AHEAD, receivedAt=bad))
        assert ev.ts == iso_to_epoch_ms(FIVE_YEARS_AHEAD) and ev.adjusted is None


def test_live_without_received_at_a_future_timestamp_is_dead_lettered() -> None:
    now = float(RECEIVED_MS)
    r = parse_event(track(timestamp=FIVE_YEARS_AHEAD), now_ms=now)
    assert isinstance(r, Reject)
    assert (r.reason, r.field) == (RejectReason.FUTURE_TIMESTAMP, "$.timestamp")
    assert "receivedAt" in r.detail and len(r.detail) < 200
    # Within the tolerance of the wall clock: kept.
    near = parse_event(track(timestamp=RECEIVED), now_ms=now - MAX_FUTURE_SKEW_MS + 1)
    assert isinstance(near, Event)


def test_a_backtest_has_no_wall_clock_and_keeps_it() -> None:
    assert event(track(timestamp=FIVE_YEARS_AHEAD)).ts == iso_to_epoch_ms(FIVE_YEARS_AHEAD)


def test_received_at_wins_over_the_wall_clock() -> None:
    ev = event(track(timestamp=FIVE_YEARS_AHEAD, receivedAt=RECEIVED), now_ms=float(RECEIVED_MS))
    assert (ev.ts, ev.adjusted) == (RECEIVED_MS, CLAMPED)
