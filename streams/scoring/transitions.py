"""PQL-transition events: their deterministic ids and their JSON shape.

The id is a hash of what identifies the change — model, version, account, kind, segment, the
event-time instant it occurred at and what triggered it (the event's messageId, time, or a model
change) — so the same input always yields the same id, whichever worker, replay or backtest
produced it, and consumers de-duplicate at-least-once deliveries by it. `detected_at` (wall clock)
is deliberately not part of it.

Every transition names the model version that produced it and the stream time from which that
version applies (`model.effective_from`: the Unix epoch for a model that applied from the start,
else the instant of the switch that made it live, see `streams.scoring.switch`).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

QUALIFIED = "qualified"
DISQUALIFIED = "disqualified"
SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"


class Trigger(StrEnum):
    EVENT = "event"  # an event arrived (message_id names it)
    TIME = "time"  # a window stopped holding an event (occurred_at is that instant)
    # Another model version took over at occurred_at, and decides differently from kept state.
    MODEL_CHANGE = "model_change"


def transition_id(
    model_name: str,
    model_version: int,
    account_id: str,
    kind: str,
    segment: str | None,
    occurred_at_ms: int,
    message_id: str | None,
    trigger: Trigger | None = None,
) -> str:
    """`trigger` only tells a model change (no message id) from time passing."""
    if message_id is not None:
        cause = message_id
    else:
        cause = "model_change" if trigger is Trigger.MODEL_CHANGE else "time"
    key = "\x1f".join(
        (
            model_name,
            str(model_version),
            account_id,
            kind,
            segment or "",
            str(occurred_at_ms),
            cause,
        )
    )
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def iso_ms(epoch_ms: int | float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-01-05T10:00:00.000Z.

    The text of `datetime.fromtimestamp(epoch_ms / 1000, UTC)` (microseconds rounded half-even,
    then floored to milliseconds), but built from a cached `YYYY-MM-DDTHH:MM:` per minute:
    `strftime` cost several µs a call, twice per transition. Outside the fast path's range
    (before 1970, after ~2096, where float seconds lose sub-µs precision) the datetime is used.
    """
    if type(epoch_ms) is int:
        if 0 <= epoch_ms < _FAST_LIMIT_MS:
            minute, rest = divmod(epoch_ms, 60_000)
            secs, ms = divmod(rest, 1000)
            prefix = _MINUTES.get(minute)
            if prefix is None:
                prefix = _minute_prefix(minute)
            return f"{prefix}{secs:02d}.{ms:03d}Z"
    elif type(epoch_ms) is float and 0.0 <= epoch_ms < _FAST_LIMIT_MS:
        # What datetime.fromtimestamp does to a float: split off the integral seconds, scale the
        # fraction to microseconds and round it half-even (round() on a float is that rounding).
        frac, whole = math.modf(epoch_ms / 1000)
        us = round(frac * 1e6)
        seconds = int(whole)
        if us >= 1_000_000:
            us -= 1_000_000
            seconds += 1
        minute, secs = divmod(seconds, 60)
        prefix = _MINUTES.get(minute)
        if prefix is None:
            prefix = _minute_prefix(minute)
        return f"{prefix}{secs:02d}.{us // 1000:03d}Z"
    return _iso_ms_datetime(epoch_ms)


def _iso_ms_datetime(epoch_ms: int | float) -> str:
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# Below 2**32 s float seconds still resolve well under a microsecond, so the float arithmetic of
# `fromtimestamp` and the integer arithmetic above agree exactly (tests/unit/scoring).
_FAST_LIMIT_MS = 4_000_000_000_000
_MINUTES: dict[int, str] = {}


def _minute_prefix(minute: int) -> str:
    if len(_MINUTES) >= 65_536:  # bounded: a long-running worker sees ever new minutes
        _MINUTES.clear()
    dt = datetime.fromtimestamp(minute * 60, tz=UTC)
    prefix = _MINUTES[minute] = dt.strftime("%Y-%m-%dT%H:%M:")
    return prefix


def build_transition(
    *,
    model_name: str,
    model_version: int,
    account_id: str,
    kind: str,
    segment: str | None,
    score: int | float,
    previous_score: int | float,
    pql: bool,
    segments: list[str],
    reasons: list[dict[str, Any]],
    condition: dict[str, Any],
    signals: dict[str, Any],
    occurred_at_ms: int,
    detected_at_ms: float,
    message_id: str | None,
    effective_from: str,
    model_change: bool = False,
    partial_signals: list[str] | None = None,
    backfilled_from: str | None = None,
    summary: str | None = None,
    playbook: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`effective_from`: the model version's start, already as ISO text (one per scorer).
    `backfilled_from`: where the history of the version's backfilled signals began, and
    `partial_signals` those whose window had not filled yet (`streams.scoring.backfill`)."""
    if message_id is not None:
        trigger = Trigger.EVENT
    else:
        trigger = Trigger.MODEL_CHANGE if model_change else Trigger.TIME
    model: dict[str, Any] = {
        "name": model_name,
        "version": model_version,
        "effective_from": effective_from,
    }
    if backfilled_from is not None:
        model["backfilled_from"] = backfilled_from
    out = {
        "transition_id": transition_id(
            model_name,
            model_version,
            account_id,
            kind,
            segment,
            occurred_at_ms,
            message_id,
            trigger,
        ),
        "account_id": account_id,
        "model": model,
        "kind": kind,
        "segment": segment,
        "score": score,
        "previous_score": previous_score,
        "pql": pql,
        "segments": segments,
        "reasons": reasons,
        "condition": condition,
        "signals": signals,
        "occurred_at": iso_ms(occurred_at_ms),
        "detected_at": iso_ms(detected_at_ms),
        "trigger": trigger.value,
        "message_id": message_id,
    }
    if summary is not None:
        out["summary"] = summary
    if playbook is not None:
        out["playbook"] = playbook
    if partial_signals:
        out["partial_signals"] = partial_signals
    return out
