"""Raw Segment-spec JSON -> `Event`, or a `Reject` a human can act on. Never raises.

This is the hot path of both the worker and the backtest (hundreds of thousands of events per
second), so it is `orjson.loads` plus hand-written checks in one straight function rather than
jsonschema per event. `schemas/product-event.schema.json` describes the same contract for
producers, and a test keeps the two in agreement.

Rules, in the order they are checked (the first failing one is the reject reason):

* the input is a JSON object                                   -> INVALID_JSON
* `type` is track / identify / group, or page / screen (mapped to track events named
  "Page Viewed" / "Screen Viewed", their `name` kept in properties) -> INVALID_TYPE
* `timestamp` present and an ISO-8601 date-time string          -> MISSING_TIMESTAMP /
                                                                   WRONG_FIELD_TYPE / BAD_TIMESTAMP
* `userId`, else `anonymousId`, a non-empty string              -> MISSING_USER
* track: `event` a non-empty string                             -> MISSING_EVENT_NAME
* group: `groupId` a non-empty string                           -> MISSING_ACCOUNT
* `properties` / `traits` / `context` objects, `context.groupId`, `messageId`, the ids and a
  page's `name` strings (JSON null counts as absent)            -> WRONG_FIELD_TYPE

Clock skew (a device whose clock is wrong; README "Time semantics"): a `timestamp` more than
`MAX_FUTURE_SKEW_MS` ahead of `receivedAt` (what the CDP stamps when the event reaches it) is
*corrected* by Segment's rule, `receivedAt - (sentAt - originalTimestamp)`, when the event has
both and that lands no later than `receivedAt`; otherwise it is *clamped* to `receivedAt`. The
event's `adjusted` says which (it is counted, never rejected). Live, the worker passes the
wall clock (`now_ms`): an event without a usable `receivedAt` whose `timestamp` is that far
ahead of it cannot have been received yet, and is rejected as FUTURE_TIMESTAMP. A backtest has
no "now" (history can be replayed at any later date), so it passes none and relies on
`receivedAt`. Either way one event from a wrong clock never moves an account's (or the
stream's) time ahead.

Dicts of the input are reused, not copied: `parse_event` owns them, and `event_from_obj` callers
hand over the object they pass in.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import orjson

from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, EventType, Reject, RejectReason

__all__ = ["parse_event", "event_from_obj", "derive_message_id"]

_loads = orjson.loads
_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_TRACK = EventType.TRACK
_IDENTIFY = EventType.IDENTIFY
_GROUP = EventType.GROUP
_TYPES: dict[str, EventType] = {"track": _TRACK, "identify": _IDENTIFY, "group": _GROUP}
# Segment's page/screen calls are ordinary product usage: kept as track events with these names.
_VIEW_NAMES: dict[str, str] = {"page": "Page Viewed", "screen": "Screen Viewed"}
_ACCEPTED_TYPES = "track, identify, group, page or screen"
_EXAMPLE_TS = "2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00"
# How far `timestamp` may lie ahead of `receivedAt` (or, without it, the wall clock) before it
# is taken for a wrong device clock: devices and servers differ by seconds, not minutes.
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
CORRECTED = "corrected"
CLAMPED = "clamped"


def parse_event(raw: object, now_ms: float | None = None) -> Event | Reject:
    """Parse one raw message (Kafka value, file line: bytes or str). Returns a `Reject` instead
    of raising, whatever `raw` is (a tombstone's None included). `now_ms`: the wall clock, live
    only (see the module docstring on clock skew). Annotations here are checked at run time in
    the compiled core (`streams.native`): what comes from outside is typed `object`."""
    try:
        obj = _loads(raw)  # type: ignore[arg-type]  # what is not bytes or text raises
    except Exception as exc:  # orjson.JSONDecodeError, or TypeError for a non-bytes input
        return Reject(RejectReason.INVALID_JSON, f"not valid JSON: {exc}")
    if type(raw) is bytes:  # the common case: `event_from_obj(obj, raw)` without its call
        try:
            return _from_obj(obj, raw, now_ms)
        except Exception as exc:
            return _unusable(exc)
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except Exception as exc:  # pragma: no cover - orjson already refused lone surrogates
            return Reject(RejectReason.INVALID_JSON, f"not valid UTF-8 text: {exc}")
    if not isinstance(raw, bytes):  # pragma: no cover - orjson takes only bytes-likes and str
        return Reject(RejectReason.INVALID_JSON, f"not bytes or text: {_describe(raw)}")
    return event_from_obj(obj, raw, now_ms)


def event_from_obj(
    obj: object, raw: bytes | None = None, now_ms: float | None = None
) -> Event | Reject:
    """Validate an already-decoded JSON value. `raw`, when given, is what a derived messageId
    hashes; otherwise the object's canonical (sorted-keys) JSON is hashed."""
    try:
        return _from_obj(obj, raw, now_ms)
    except Exception as exc:  # e.g. a caller's object whose __eq__ raises: still no exception out
        return _unusable(exc)


def _unusable(exc: Exception) -> Reject:
    return Reject(RejectReason.INVALID_JSON, f"unusable event ({type(exc).__name__}: {exc})")


def derive_message_id(obj: object, raw: bytes | None = None) -> str:
    """`sha:` + 16 hex of blake2b over the raw bytes, or over the sorted-keys JSON of `obj`.

    Deterministic, so a producer's retry of the same bytes gets the same id and is deduplicated.
    Raises (orjson.JSONEncodeError) only when `raw` is None and `obj` is not JSON-serializable.
    """
    data = raw if raw is not None else _dumps(obj, option=_SORT)
    return "sha:" + blake2b(data).hexdigest()[:16]


def _from_obj(obj: object, raw: bytes | None, now_ms: float | None = None) -> Event | Reject:
    if not isinstance(obj, dict):
        return Reject(
            RejectReason.INVALID_JSON,
            f"expected a JSON object at the top level, got {_describe(obj)}",
        )

    # -- type ------------------------------------------------------------------------------
    type_raw = obj.get("type")
    etype = _TYPES.get(type_raw) if isinstance(type_raw, str) else None
    view_name: str | None = None
    if etype is None:
        view_name = _VIEW_NAMES.get(type_raw) if isinstance(type_raw, str) else None
        if view_name is None:
            return _bad_type(type_raw, "type" in obj)
        etype = _TRACK

    # -- timestamp -------------------------------------------------------------------------
    ts_raw = obj.get("timestamp")
    if ts_raw is None:
        return Reject(
            RejectReason.MISSING_TIMESTAMP,
            f"`timestamp` is required: the event time as an ISO-8601 date-time, e.g. {_EXAMPLE_TS}",
            "$.timestamp",
        )
    if not isinstance(ts_raw, str):
        return _wrong_type(
            "$.timestamp", "an ISO-8601 date-time string (epoch numbers are not accepted)", ts_raw
        )
    ts = iso_to_epoch_ms(ts_raw)
    if ts is None:
        return Reject(
            RejectReason.BAD_TIMESTAMP,
            f"`timestamp` {_short(ts_raw)} is not an ISO-8601 date-time; "
            f"expected e.g. {_EXAMPLE_TS}",
            "$.timestamp",
        )

    # -- user ------------------------------------------------------------------------------
    user_id = obj.get("userId")
    anon = obj.get("anonymousId")
    if user_id is not None and not isinstance(user_id, str):
        return _wrong_type("$.userId", "a string", user_id)
    if anon is not None and not isinstance(anon, str):
        return _wrong_type("$.anonymousId", "a string", anon)
    if not user_id:
        if not anon:
            return Reject(
                RejectReason.MISSING_USER,
                "neither `userId` nor `anonymousId` is a non-empty string: the event names no user",
                "$.userId",
            )
        user_id = anon

    # -- type-specific required fields -----------------------------------------------------
    name: str | None = None
    group_id: str | None = None
    if etype is _TRACK:
        if view_name is not None:
            name = view_name
        else:
            event_raw = obj.get("event")
            if event_raw is not None and not isinstance(event_raw, str):
                return _wrong_type("$.event", "a non-empty string (the event name)", event_raw)
            name = event_raw
            if not name:
                return Reject(
                    RejectReason.MISSING_EVENT_NAME,
                    "track event has no `event` name (expected a non-empty string)",
                    "$.event",
                )
    elif etype is _GROUP:
        group_raw = obj.get("groupId")
        if group_raw is not None and not isinstance(group_raw, str):
            return _wrong_type("$.groupId", "a non-empty string (the account id)", group_raw)
        group_id = group_raw
        if not group_id:
            return Reject(
                RejectReason.MISSING_ACCOUNT,
                "group call has no `groupId` (expected a non-empty string: the account id)",
                "$.groupId",
            )

    # -- optional containers ---------------------------------------------------------------
    props = obj.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        return _wrong_type("$.properties", "an object", props)
    traits = obj.get("traits")
    if traits is None:
        traits = {}
    elif not isinstance(traits, dict):
        return _wrong_type("$.traits", "an object", traits)
    ctx = obj.get("context")
    account_id: str | None = group_id
    if ctx is not None:
        if not isinstance(ctx, dict):
            return _wrong_type("$.context", "an object", ctx)
        ctx_group = ctx.get("groupId")
        if ctx_group is not None:
            if not isinstance(ctx_group, str):
                return _wrong_type("$.context.groupId", "a string (the account id)", ctx_group)
            if ctx_group.startswith("\x00"):
                return _nul_id("$.context.groupId", ctx_group)
            if account_id is None and ctx_group:
                account_id = ctx_group
    if group_id is not None and group_id.startswith("\x00"):
        return _nul_id("$.groupId", group_id)

    if view_name is not None:
        page_name = obj.get("name")
        if page_name is not None:
            if not isinstance(page_name, str):
                return _wrong_type("$.name", "a string (the page or screen name)", page_name)
            if "name" not in props:
                props = {**props, "name": page_name}

    # -- messageId -------------------------------------------------------------------------
    message_id = obj.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        return _wrong_type("$.messageId", "a string", message_id)
    if not message_id:
        try:
            message_id = derive_message_id(obj, raw)
        except Exception as exc:
            return Reject(
                RejectReason.INVALID_JSON,
                f"no `messageId` and the event is not JSON-serializable to derive one: {exc}",
                "$.messageId",
            )

    adjusted: str | None = None
    received = obj.get("receivedAt")
    received_ms = iso_to_epoch_ms(received) if type(received) is str else None
    if received_ms is not None:
        if ts > received_ms + MAX_FUTURE_SKEW_MS:
            ts, adjusted = _skewed(obj, ts, received_ms)
    elif now_ms is not None and ts > now_ms + MAX_FUTURE_SKEW_MS:
        return Reject(
            RejectReason.FUTURE_TIMESTAMP,
            f"`timestamp` {_short(ts_raw)} is ahead of the wall clock: the device's clock is "
            "wrong (send `receivedAt` to have it corrected)",
            "$.timestamp",
        )

    if etype is _TRACK:
        return Event(etype, message_id, ts, user_id, account_id, name, props, {}, None, adjusted)
    return Event(etype, message_id, ts, user_id, account_id, None, {}, traits, None, adjusted)


def _skewed(obj: dict[str, Any], ts: int, received_ms: int) -> tuple[int, str]:
    """(event time, how) for a `timestamp` too far ahead of `receivedAt`: Segment's correction
    `receivedAt - (sentAt - originalTimestamp)` when the event has both and it lands no later
    than `receivedAt` (plus the tolerance), else `receivedAt` itself."""
    sent = obj.get("sentAt")
    original = obj.get("originalTimestamp")
    if type(sent) is str and type(original) is str:
        sent_ms = iso_to_epoch_ms(sent)
        original_ms = iso_to_epoch_ms(original)
        if sent_ms is not None and original_ms is not None:
            corrected = received_ms - (sent_ms - original_ms)
            if corrected <= received_ms + MAX_FUTURE_SKEW_MS:
                return corrected, CORRECTED
    return received_ms, CLAMPED


# -- reject construction (cold path) ---------------------------------------------------------


def _bad_type(value: Any, present: bool) -> Reject:
    if not present or value is None:
        detail = f"`type` is missing; expected one of {_ACCEPTED_TYPES}"
    elif isinstance(value, str):
        detail = f"unsupported `type` {_short(value)}; expected one of {_ACCEPTED_TYPES}"
    else:
        detail = f"`type` must be a string ({_ACCEPTED_TYPES}), got {_describe(value)}"
    return Reject(RejectReason.INVALID_TYPE, detail, "$.type")


def _nul_id(path: str, got: str) -> Reject:
    """Keys starting with NUL are the worker's own, in the accounts table."""
    return _wrong_type(path, "an account id that does not start with a NUL character", got)


def _wrong_type(path: str, expected: str, got: Any) -> Reject:
    return Reject(
        RejectReason.WRONG_FIELD_TYPE,
        f"`{path[2:]}` must be {expected}, got {_describe(got)}",
        path,
    )


_JSON_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _describe(value: Any) -> str:
    """JSON type name plus a short rendering of the value, e.g. `number 1714564800`."""
    kind = _JSON_TYPE_NAMES.get(type(value)) or type(value).__name__
    if isinstance(value, dict):
        return f"{kind} with {len(value)} key(s)"
    if isinstance(value, list):
        return f"{kind} of {len(value)} item(s)"
    if value is None:
        return kind
    return f"{kind} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = orjson.dumps(value).decode()
    except Exception:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
