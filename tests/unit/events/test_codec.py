"""encode_event/decode_event round-trip exactly, and refuse what they did not write."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events.codec import decode_event, encode_event
from streams.events.types import Event, EventType

from .strategies import json_objects

opt_text = st.none() | st.text(max_size=8)
events = st.builds(
    Event,
    type=st.sampled_from(list(EventType)),
    message_id=st.text(max_size=20),
    ts=st.integers(min_value=-(2**62), max_value=2**62),
    user_id=opt_text,
    account_id=opt_text,
    event=opt_text,
    properties=json_objects,
    traits=json_objects,
    user_traits=st.none() | json_objects,
)


@settings(max_examples=300)
@given(events)
def test_round_trip_exact(ev: Event) -> None:
    back = decode_event(encode_event(ev))
    assert back == ev
    assert back.type is ev.type
    assert type(back.ts) is int


def test_value_types_survive() -> None:
    props: dict[str, Any] = {
        "i": 2**64 - 1,
        "n": -(2**63),
        "f": 0.1,
        "b": True,
        "z": None,
        "l": [1, "a", [2.5]],
        "d": {"x": {"y": False}},
    }
    ev = Event(EventType.TRACK, "m", 1, "u", "a", "E", props, {}, {"title": "CTO"})
    back = decode_event(encode_event(ev))
    assert back.properties == props
    assert type(back.properties["b"]) is bool and type(back.properties["f"]) is float


def test_encoding_is_compact() -> None:
    ev = Event(EventType.TRACK, "ajs-1", 1714564800000, "u1", "acme", "Message Sent", {"n": 1})
    # Positional msgpack: well under half the JSON-with-field-names form.
    assert len(encode_event(ev)) * 2 < len(orjson.dumps(ev))


def test_rejects_foreign_bytes() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"type":"track"}')


def test_rejects_other_format_version() -> None:
    data = msgspec.msgpack.encode((2, "track", "m", 1, None, None, None, {}, {}, None))
    with pytest.raises(ValueError, match="version 2"):
        decode_event(data)


def test_rejects_unknown_type() -> None:
    data = msgspec.msgpack.encode((1, "alias", "m", 1, None, None, None, {}, {}, None))
    with pytest.raises(ValueError, match="alias"):
        decode_event(data)
