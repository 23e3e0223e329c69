"""parse_event / event_from_obj: accepted shapes, every reject reason with its field, derived
messageIds, and that no input makes it raise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events.parse import derive_message_id, event_from_obj, parse_event
from streams.events.types import Event, EventType, Reject, RejectReason

from .strategies import event_objects, json_values

TS = "2024-05-01T12:00:00Z"
TS_MS = 1_714_564_800_000


def track(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "Message Sent",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": TS,
        "properties": {"channel": "general"},
        "context": {"groupId": "acme"},
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def parsed(obj: dict[str, Any]) -> Event:
    result = parse_event(orjson.dumps(obj))
    assert isinstance(result, Event), result
    return result


def rejected(obj: Any) -> Reject:
    result = parse_event(orjson.dumps(obj))
    assert isinstance(result, Reject), result
    return result


# -- accepted ------------------------------------------------------------------------------


def test_track_fields() -> None:
    ev = parsed(track())
    assert ev == Event(
        EventType.TRACK, "m1", TS_MS, "u1", "acme", "Message Sent", {"channel": "general"}, {}
    )
    assert ev.user_traits is None


def test_identify_and_group_fields() -> None:
    ident = parsed(
        {"type": "identify", "userId": "u1", "timestamp": TS, "traits": {"title": "CTO"}}
    )
    assert (ident.type, ident.account_id, ident.traits, ident.event) == (
        EventType.IDENTIFY,
        None,
        {"title": "CTO"},
        None,
    )
    grp = parsed(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "timestamp": TS,
            "traits": {"plan": "pro"},
            "context": {"groupId": "other"},
        }
    )
    # A group call's own groupId wins over context.groupId.
    assert (grp.type, grp.account_id, grp.traits) == (EventType.GROUP, "acme", {"plan": "pro"})


def test_str_input_and_bytes_input_agree() -> None:
    raw = orjson.dumps(track(messageId=_DROP))
    assert parse_event(raw) == parse_event(raw.decode())


def test_anonymous_id_used_when_no_user_id() -> None:
    assert parsed(track(userId=None, anonymousId="anon-7")).user_id == "anon-7"
    assert parsed(track(userId="", anonymousId="anon-7")).user_id == "anon-7"
    assert parsed(track(anonymousId="anon-7")).user_id == "u1"


def test_context_group_id_optional() -> None:
    assert parsed(track(context=_DROP)).account_id is None
    assert parsed(track(context={"ip": "1.2.3.4"})).account_id is None
    assert parsed(track(context={"groupId": ""})).account_id is None
    assert parsed(track(context=None)).account_id is None


def test_null_containers_read_as_empty() -> None:
    ev = parsed(track(properties=None))
    assert ev.properties == {}


@pytest.mark.parametrize(("kind", "name"), [("page", "Page Viewed"), ("screen", "Screen Viewed")])
def test_page_and_screen_become_track_events(kind: str, name: str) -> None:
    ev = parsed(
        {
            "type": kind,
            "anonymousId": "a1",
            "timestamp": TS,
            "name": "Pricing",
            "properties": {"path": "/pricing"},
            "context": {"groupId": "acme"},
        }
    )
    assert (ev.type, ev.event, ev.account_id) == (EventType.TRACK, name, "acme")
    assert ev.properties == {"path": "/pricing", "name": "Pricing"}


def test_page_explicit_property_name_is_kept_and_input_not_mutated() -> None:
    props = {"name": "from-properties"}
    obj = {"type": "page", "userId": "u", "timestamp": TS, "name": "top", "properties": props}
    ev = event_from_obj(obj)
    assert isinstance(ev, Event)
    assert ev.properties == {"name": "from-properties"}
    page = {"type": "page", "userId": "u", "timestamp": TS, "name": "top", "properties": {}}
    ev2 = event_from_obj(page)
    assert isinstance(ev2, Event) and ev2.properties == {"name": "top"}
    assert page["properties"] == {}


def test_page_without_name_has_no_name_property() -> None:
    ev = parsed({"type": "page", "userId": "u", "timestamp": TS})
    assert (ev.event, ev.properties) == ("Page Viewed", {})


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-05-01T12:00:00Z", TS_MS),
        ("2024-05-01T12:00:00", TS_MS),  # naive: UTC
        ("2024-05-01T12:00:00.123Z", TS_MS + 123),
        ("2024-05-01T12:00:00.1Z", TS_MS + 100),
        ("2024-05-01T12:00:00.123999Z", TS_MS + 123),  # floored, not rounded
        ("2024-05-01T12:00:00.123456789Z", TS_MS + 123),  # nanoseconds truncated
        ("2024-05-01T14:00:00+02:00", TS_MS),
        ("2024-05-01T06:30:00.5-05:30", TS_MS + 500),
        ("2024-05-01T12:00:00-00:00", TS_MS),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_timestamps(text: str, ms: int) -> None:
    assert parsed(track(timestamp=text)).ts == ms


# -- rejected ------------------------------------------------------------------------------

REJECTS: list[tuple[str, Any, RejectReason, str | None, str]] = [
    ("not json", b"{nope", RejectReason.INVALID_JSON, None, "not valid JSON"),
    ("array", [1, 2], RejectReason.INVALID_JSON, None, "got array"),
    ("string", "hi", RejectReason.INVALID_JSON, None, "got string"),
    ("no type", track(type=_DROP), RejectReason.INVALID_TYPE, "$.type", "missing"),
    ("alias", track(type="alias"), RejectReason.INVALID_TYPE, "$.type", '"alias"'),
    ("type number", track(type=3), RejectReason.INVALID_TYPE, "$.type", "got number 3"),
    ("Track", track(type="Track"), RejectReason.INVALID_TYPE, "$.type", "Track"),
    ("no ts", track(timestamp=_DROP), RejectReason.MISSING_TIMESTAMP, "$.timestamp", "required"),
    ("null ts", track(timestamp=None), RejectReason.MISSING_TIMESTAMP, "$.timestamp", "required"),
    (
        "epoch ts",
        track(timestamp=1714564800),
        RejectReason.WRONG_FIELD_TYPE,
        "$.timestamp",
        "got number 1714564800",
    ),
    ("date only", track(timestamp="2024-05-01"), RejectReason.BAD_TIMESTAMP, "$.timestamp", ""),
    ("words", track(timestamp="yesterday"), RejectReason.BAD_TIMESTAMP, "$.timestamp", "yesterday"),
    (
        "feb 30",
        track(timestamp="2024-02-30T00:00:00Z"),
        RejectReason.BAD_TIMESTAMP,
        "$.timestamp",
        "",
    ),
    ("no user", track(userId=_DROP), RejectReason.MISSING_USER, "$.userId", "anonymousId"),
    ("empty users", track(userId="", anonymousId=""), RejectReason.MISSING_USER, "$.userId", ""),
    ("user int", track(userId=42), RejectReason.WRONG_FIELD_TYPE, "$.userId", "got number 42"),
    (
        "anon list",
        track(anonymousId=["a"]),
        RejectReason.WRONG_FIELD_TYPE,
        "$.anonymousId",
        "got array",
    ),
    ("no event", track(event=_DROP), RejectReason.MISSING_EVENT_NAME, "$.event", "event"),
    ("empty event", track(event=""), RejectReason.MISSING_EVENT_NAME, "$.event", ""),
    ("event obj", track(event={"a": 1}), RejectReason.WRONG_FIELD_TYPE, "$.event", "got object"),
    (
        "group no id",
        {"type": "group", "userId": "u", "timestamp": TS},
        RejectReason.MISSING_ACCOUNT,
        "$.groupId",
        "groupId",
    ),
    (
        "group int id",
        {"type": "group", "userId": "u", "timestamp": TS, "groupId": 7},
        RejectReason.WRONG_FIELD_TYPE,
        "$.groupId",
        "got number 7",
    ),
    (  # the worker's own keys in the accounts table start with NUL
        "group NUL id",
        {"type": "group", "userId": "u", "timestamp": TS, "groupId": "\x00pql:model-version"},
        RejectReason.WRONG_FIELD_TYPE,
        "$.groupId",
        "does not start with a NUL",
    ),
    (
        "context NUL id",
        track(context={"groupId": "\x00x"}),
        RejectReason.WRONG_FIELD_TYPE,
        "$.context.groupId",
        "does not start with a NUL",
    ),
    ("props list", track(properties=[1]), RejectReason.WRONG_FIELD_TYPE, "$.properties", "array"),
    ("traits str", track(traits="x"), RejectReason.WRONG_FIELD_TYPE, "$.traits", "got string"),
    ("context str", track(context="c"), RejectReason.WRONG_FIELD_TYPE, "$.context", "an object"),
    (
        "ctx group int",
        track(context={"groupId": 5}),
        RejectReason.WRONG_FIELD_TYPE,
        "$.context.groupId",
        "got number 5",
    ),
    ("msgid int", track(messageId=1), RejectReason.WRONG_FIELD_TYPE, "$.messageId", "a string"),
    (
        "page name int",
        {"type": "page", "userId": "u", "timestamp": TS, "name": 1},
        RejectReason.WRONG_FIELD_TYPE,
        "$.name",
        "page or screen name",
    ),
]


@pytest.mark.parametrize(
    ("obj", "reason", "field", "needle"),
    [r[1:] for r in REJECTS],
    ids=[r[0] for r in REJECTS],
)
def test_rejects(obj: Any, reason: RejectReason, field: str | None, needle: str) -> None:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    result = parse_event(raw)
    assert isinstance(result, Reject), result
    assert (result.reason, result.field) == (reason, field)
    assert needle in result.detail
    assert len(result.detail) < 200


def test_every_parse_reason_is_covered() -> None:
    covered = {r[2] for r in REJECTS}
    # TOO_LATE belongs to the state store, MISSING_ACCOUNT for tracks to the resolver;
    # FUTURE_TIMESTAMP needs a wall clock (tests/unit/events/test_skew.py).
    assert covered == set(RejectReason) - {RejectReason.TOO_LATE, RejectReason.FUTURE_TIMESTAMP}


def test_wrong_type_detail_names_expected_and_got() -> None:
    r = rejected(track(context={"groupId": 12}))
    assert r.detail == "`context.groupId` must be a string (the account id), got number 12"


def test_long_bad_values_are_truncated_in_detail() -> None:
    r = rejected(track(timestamp="x" * 500))
    assert r.reason is RejectReason.BAD_TIMESTAMP and "..." in r.detail and len(r.detail) < 200


# -- messageId -----------------------------------------------------------------------------


def test_given_message_id_is_kept() -> None:
    assert parsed(track(messageId="ajs-1")).message_id == "ajs-1"


def test_derived_message_id_is_deterministic_hash_of_raw() -> None:
    raw = orjson.dumps(track(messageId=_DROP))
    first, second = parse_event(raw), parse_event(bytes(raw))
    assert isinstance(first, Event) and isinstance(second, Event)
    assert first.message_id == second.message_id
    assert first.message_id.startswith("sha:") and len(first.message_id) == 4 + 16
    int(first.message_id[4:], 16)
    other = parse_event(orjson.dumps(track(messageId=_DROP, event="Other")))
    assert isinstance(other, Event) and other.message_id != first.message_id


def test_empty_message_id_is_derived() -> None:
    assert parsed(track(messageId="")).message_id.startswith("sha:")


def test_derived_message_id_without_raw_ignores_key_order() -> None:
    a = {"type": "track", "event": "E", "userId": "u", "timestamp": TS}
    b = dict(reversed(list(a.items())))
    ea, eb = event_from_obj(a), event_from_obj(b)
    assert isinstance(ea, Event) and isinstance(eb, Event)
    assert ea.message_id == eb.message_id == derive_message_id(a)
    # With raw given, the raw bytes are what is hashed.
    ec = event_from_obj(a, raw=b"exact bytes")
    assert isinstance(ec, Event) and ec.message_id == derive_message_id(None, b"exact bytes")
    assert ec.message_id != ea.message_id


def test_unserializable_object_without_message_id_is_rejected_not_raised() -> None:
    obj = {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "x": {1, 2}}
    result = event_from_obj(obj)
    assert isinstance(result, Reject) and result.reason is RejectReason.INVALID_JSON


# -- never raises --------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_garbage_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_event(raw), Event | Reject)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_garbage_text_never_raises(raw: str) -> None:
    assert isinstance(parse_event(raw), Event | Reject)


@settings(max_examples=300)
@given(json_values)
def test_any_json_value_never_raises(value: Any) -> None:
    assert isinstance(parse_event(orjson.dumps(value)), Event | Reject)


@settings(max_examples=500)
@given(event_objects)
def test_event_shaped_objects_never_raise(obj: dict[str, Any]) -> None:
    result = parse_event(orjson.dumps(obj))
    assert isinstance(result, Event | Reject)
    if isinstance(result, Event):
        assert result.user_id and isinstance(result.ts, int) and result.message_id


def test_non_bytes_inputs_never_raise() -> None:
    for bad in (None, 12, object(), b"\xff\xfe", "\ud800"):
        result = parse_event(bad)  # type: ignore[arg-type]
        assert isinstance(result, Reject) and result.reason is RejectReason.INVALID_JSON


def test_hostile_object_never_raises() -> None:
    class Evil(str):
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        __hash__ = str.__hash__

    result = event_from_obj({"type": Evil("track")})
    assert isinstance(result, Reject)
