"""Hypothesis strategies shared by the events tests: JSON values and Segment-ish event objects
that mix valid and invalid field values, so both accept and reject paths are exercised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets | st.just(UTC)
)


def _iso(dt: datetime, zulu: bool) -> str:
    text = dt.isoformat()
    return text.replace("+00:00", "Z") if zulu else text


# Valid RFC 3339 date-times *with* an offset (the parser and the schema agree on these).
rfc3339_timestamps = st.builds(_iso, aware_datetimes, st.booleans())
bad_timestamps = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "2024-01-01",
            "2024-01-01T10:00",
            "20240101T100000Z",
            "2024-W01-1T10:00:00Z",
            "2024-01-01T10:00:00,5Z",
            "2024-01-01T10:00:00+0100",
            "2024-02-30T10:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:00:00+00:60",
            "2024-01-01 10:00:00Z",
            "yesterday",
        ]
    ),
)
ids = st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=6), json_scalars)
containers = st.one_of(st.none(), json_objects, json_values)
contexts = st.one_of(
    containers,
    st.fixed_dictionaries({}, optional={"groupId": ids, "ip": st.text(max_size=4)}),
)


def events(timestamps: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Event-shaped dicts: each field present or not, valid or not."""
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["track", "identify", "group", "page", "screen", "alias", ""])
            | json_scalars,
            "timestamp": timestamps,
            "userId": ids,
            "anonymousId": ids,
            "messageId": ids,
            "event": ids,
            "groupId": ids,
            "name": ids,
            "properties": containers,
            "traits": containers,
            "context": contexts,
        },
    )


def near_valid_events(timestamps: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Event dicts whose fields are mostly valid, so about half are accepted and the rejects
    come one or two faults at a time (uniform `events()` almost never yields a valid one)."""

    def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        # Not one_of(good, good, ..., bad): hypothesis flattens nested one_ofs and picks among
        # all their branches uniformly, so a many-branched `bad` would dominate.
        return st.integers(0, 5).flatmap(lambda i: bad if i == 0 else good)

    good_ids = st.text(min_size=1, max_size=6)
    good_containers = st.none() | json_objects
    good_contexts = st.fixed_dictionaries({}, optional={"groupId": st.none() | st.text(max_size=4)})
    kinds = st.sampled_from(["track", "identify", "group", "page", "screen"])
    return st.fixed_dictionaries(
        {
            "type": mostly(kinds, st.sampled_from(["alias", "Track"]) | json_scalars),
            "timestamp": mostly(timestamps, bad_timestamps | json_scalars),
            "userId": mostly(good_ids, ids),
            "event": mostly(good_ids, ids),
            "groupId": mostly(good_ids, ids),
        },
        optional={
            "anonymousId": mostly(good_ids, ids),
            "messageId": mostly(good_ids, ids),
            "name": mostly(st.none() | good_ids, ids),
            "properties": mostly(good_containers, containers),
            "traits": mostly(good_containers, containers),
            "context": mostly(good_contexts, contexts),
        },
    )


# Garbage-leaning and mostly-valid event objects, RFC 3339 timestamps (with offsets) when valid.
event_objects = events(rfc3339_timestamps | bad_timestamps | json_scalars) | near_valid_events(
    rfc3339_timestamps
)
