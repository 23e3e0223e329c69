"""schemas/product-event.schema.json and parse_event accept and reject the same inputs.

Documented difference: the parser also accepts a timestamp without an offset (read as UTC),
which RFC 3339 `date-time` refuses. Everything else must agree exactly, including calendar
checks on `date-time` (jsonschema's FormatChecker, backed by rfc3339-validator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import rfc3339_validator  # noqa: F401  (jsonschema's FormatChecker checks date-time only with it)
from hypothesis import find, given, settings

from streams.events.parse import event_from_obj
from streams.events.types import Event

from .strategies import event_objects

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "product-event.schema.json"
SCHEMA = orjson.loads(SCHEMA_PATH.read_bytes())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
TS = "2024-05-01T12:00:00Z"


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert "date-time" in jsonschema.FormatChecker.checkers  # else formats silently pass


def agree(obj: Any) -> None:
    parser_accepts = isinstance(event_from_obj(obj), Event)
    schema_accepts = VALIDATOR.is_valid(obj)
    assert parser_accepts == schema_accepts, (obj, event_from_obj(obj))


VALID: list[Any] = [
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS},
    {"type": "track", "event": "E", "anonymousId": "a", "userId": None, "timestamp": TS},
    {"type": "track", "event": "E", "userId": "", "anonymousId": "a", "timestamp": TS},
    {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01T12:00:00.5+02:00"},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "context": {"groupId": ""}},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "properties": None},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "messageId": ""},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "groupId": 5},  # ignored
    {"type": "identify", "userId": "u", "timestamp": TS, "traits": {"title": "CTO"}},
    {"type": "identify", "userId": "u", "timestamp": TS, "event": 3},  # ignored off track
    {"type": "group", "userId": "u", "groupId": "g", "timestamp": TS, "traits": {}},
    {"type": "page", "anonymousId": "a", "timestamp": TS, "name": "Home"},
    {"type": "screen", "userId": "u", "timestamp": TS, "name": None},
    {"type": "identify", "userId": "u", "timestamp": TS, "name": 1},  # name only matters on views
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "extra": [1, {"a": None}]},
]
INVALID: list[Any] = [
    [],
    "track",
    None,
    {},
    {"type": "alias", "userId": "u", "timestamp": TS},
    {"type": 1, "userId": "u", "timestamp": TS},
    {"type": "track", "event": "E", "userId": "u"},
    {"type": "track", "event": "E", "userId": "u", "timestamp": None},
    {"type": "track", "event": "E", "userId": "u", "timestamp": 1714564800},
    {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01"},
    {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-02-30T00:00:00Z"},
    {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01T12:00:00+0200"},
    {"type": "track", "event": "E", "timestamp": TS},
    {"type": "track", "event": "E", "userId": "", "anonymousId": None, "timestamp": TS},
    {"type": "track", "event": "E", "userId": 1, "anonymousId": "a", "timestamp": TS},
    {"type": "track", "event": "E", "userId": "u", "anonymousId": 1, "timestamp": TS},
    {"type": "track", "userId": "u", "timestamp": TS},
    {"type": "track", "event": "", "userId": "u", "timestamp": TS},
    {"type": "track", "event": None, "userId": "u", "timestamp": TS},
    {"type": "track", "event": ["E"], "userId": "u", "timestamp": TS},
    {"type": "group", "userId": "u", "timestamp": TS},
    {"type": "group", "userId": "u", "groupId": "", "timestamp": TS},
    {"type": "group", "userId": "u", "groupId": 9, "timestamp": TS},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "properties": []},
    {"type": "identify", "userId": "u", "timestamp": TS, "traits": "CTO"},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "context": 1},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "context": {"groupId": 1}},
    {"type": "track", "event": "E", "userId": "u", "timestamp": TS, "messageId": 1},
    {"type": "page", "userId": "u", "timestamp": TS, "name": ["Home"]},
]


@pytest.mark.parametrize("obj", VALID)
def test_valid_table(obj: Any) -> None:
    assert VALIDATOR.is_valid(obj)
    agree(obj)


@pytest.mark.parametrize("obj", INVALID)
def test_invalid_table(obj: Any) -> None:
    assert not VALIDATOR.is_valid(obj)
    agree(obj)


def test_documented_difference_naive_timestamp() -> None:
    obj = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01T12:00:00"}
    assert isinstance(event_from_obj(obj), Event)
    assert not VALIDATOR.is_valid(obj)


def _naive(ts: object) -> bool:
    """A timestamp RFC 3339 would accept if it had an offset: the documented difference."""
    return (
        isinstance(ts, str)
        and not VALIDATOR.is_valid({**VALID[0], "timestamp": ts})
        and VALIDATOR.is_valid({**VALID[0], "timestamp": ts + "Z"})
    )


@settings(max_examples=800)
@given(event_objects)
def test_generated_events_agree(obj: dict[str, Any]) -> None:
    if _naive(obj.get("timestamp")):
        assert VALIDATOR.is_valid({**obj, "timestamp": obj["timestamp"] + "Z"}) == isinstance(
            event_from_obj(obj), Event
        )
        return
    agree(obj)


def test_generated_events_include_accepted_ones() -> None:
    # Guards the strategy: agreement on rejects alone would prove little.
    found = find(event_objects, lambda o: isinstance(event_from_obj(o), Event))
    assert VALIDATOR.is_valid(found)
