"""Typed product events (Segment spec) and the machine-readable reason an input is rejected."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """Segment call types kept as events. `page`/`screen` calls are parsed into TRACK events.

    A StrEnum so `str()`/f-strings give the wire value ("track"), e.g. in metric labels.
    """

    TRACK = "track"
    IDENTIFY = "identify"
    GROUP = "group"


@dataclass(slots=True)
class Event:
    """One valid product event.

    `account_id` is the account the event itself names (`context.groupId`, or `groupId` of a
    `group` call); None when it names none — then `streams.events.resolver.AccountResolver` decides.
    """

    type: EventType
    message_id: str  # `messageId`; when absent, a deterministic hash of the raw bytes ("sha:...")
    ts: int  # event time (`timestamp`), epoch milliseconds UTC
    user_id: str | None  # `userId`, else `anonymousId`
    account_id: str | None
    event: str | None = None  # track: the event name
    properties: dict[str, Any] = field(default_factory=dict)  # track properties
    # identify: user traits; group: account traits
    traits: dict[str, Any] = field(default_factory=dict)
    # Set by the resolver on events it routes to an account: the user's latest traits that the
    # model reads (so the account learns e.g. a user's `title` from an earlier identify call).
    user_traits: dict[str, Any] | None = None
    # How the parser changed `ts` of an event from a wrong device clock ("corrected" or
    # "clamped", see `streams.events.parse`); None for almost every event. Not on the wire.
    adjusted: str | None = None


class RejectReason(StrEnum):
    """Why an input went to the dead-letter topic; the value is the stable label."""

    INVALID_JSON = "invalid_json"  # not JSON, or not a JSON object
    # `type` missing or not track/identify/group/page/screen (alias, or not a string...)
    INVALID_TYPE = "invalid_type"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"  # not an ISO-8601 date-time
    MISSING_USER = "missing_user"  # neither userId nor anonymousId is a non-empty string
    MISSING_EVENT_NAME = "missing_event_name"  # track without `event`
    # a group call without `groupId`; or (resolver) a track with no `context.groupId` whose
    # user joined no group earlier
    MISSING_ACCOUNT = "missing_account"
    WRONG_FIELD_TYPE = "wrong_field_type"  # a field has the wrong JSON type
    TOO_LATE = "too_late"  # older than the account's time minus the longest window
    # `timestamp` far ahead of the wall clock and no `receivedAt` to correct it by
    FUTURE_TIMESTAMP = "future_timestamp"


@dataclass(frozen=True, slots=True)
class Reject:
    reason: RejectReason
    detail: str  # human-readable: which field, what was wrong
    field: str | None = None  # JSON path of the offending field, e.g. "$.timestamp"
