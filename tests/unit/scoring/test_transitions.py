"""Transition ids, the transition schema, advance() step-invariance and the state codec."""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.scoring.engine import Scorer
from streams.scoring.transitions import iso_ms, transition_id
from streams.state.account import recent_transition
from tests.unit.scoring.util import (
    DAY,
    HOUR,
    MIN,
    T0,
    VALIDATOR,
    Harness,
    group,
    identify,
    model,
    track,
)

PROP = """
name: prop
version: 2
signals:
  msgs:      {count: "Message Sent", window: 2h}
  msgs_day:  {count: "Message Sent", window: 1d, bucket: 3h}
  invites:   {count: "Invite Sent", window: 12h}
  storage:   {sum: "File Uploaded", property: size, window: 6h, bucket: 1h}
  seats:     {distinct_users: any, window: 4h}
  days:      {active_days: any, window: 2d}
  onboarded: {ever: "Onboarding Completed"}
  employees: {trait: employees}
  vps:       {users_with_trait: title, in: ["VP"]}
score:
  - {when: onboarded, points: 20}
  - {when: "msgs >= 2", points: 30}
  - {when: "invites >= 1", points: 30}
  - {per: seats, every: 1, points: 10, max: 30}
  - {per: storage, every: 10, points: 5, max: 20}
qualify:
  when: "score >= 70 and employees >= 10"
  exit: "score < 50"
segments:
  busy:    "msgs_day >= 3"
  vp_pql:  "pql and vps >= 1"
  stalled: "onboarded and score < 40 and days >= 1"
"""
PROP_MODEL = model(PROP)

KINDS = ["Message Sent", "Invite Sent", "File Uploaded", "Onboarding Completed", "Other"]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events for three accounts over three days, in arrival order (some arrive late)."""
    n = draw(st.integers(min_value=1, max_value=40))
    items = []
    for i in range(n):
        account = draw(st.sampled_from(["a", "b", "c"]))
        ts = T0 + draw(st.integers(min_value=0, max_value=3 * DAY))
        user = draw(st.sampled_from(["u1", "u2", "u3", "u4"]))
        what = draw(st.sampled_from([*KINDS, *KINDS, "group", "identify"]))
        if what == "group":
            obj = group(user, account, ts, {"employees": draw(st.sampled_from([5, 50]))}, f"e{i}")
        elif what == "identify":
            obj = identify(user, ts, {"title": draw(st.sampled_from(["VP", "Dev"]))}, f"e{i}")
        else:
            props = {"size": draw(st.integers(min_value=1, max_value=30))}
            obj = track(what, ts, user=user, account=account, props=props, mid=f"e{i}")
        delay = draw(st.sampled_from([0, 0, 0, 5 * MIN, 2 * HOUR, 20 * HOUR]))
        items.append((ts + delay, i, ts, obj))
    items.sort(key=lambda x: (x[0], x[1]))
    return [obj | {"_ts": ts} for _, _, ts, obj in items]


def _strip(t: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in t.items() if k != "detected_at"}


def _run(
    events: list[dict[str, Any]],
    steps: list[list[int]] | None,
    end_steps: list[int],
    codec_at: int | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, bytes]]:
    """Feed `events`; before event i advance every account through the watermarks `steps[i]`
    (per-mille of the way from the last watermark to the earliest time still to come). At the
    end advance to the last time + 3d in `end_steps` steps. `codec_at`: re-decode every state
    from bytes before that event."""
    h = Harness(PROP_MODEL)
    wm = T0
    end = max(e["_ts"] for e in events) + 3 * DAY
    for i, obj in enumerate(events):
        if codec_at == i:
            h.states = {
                a: h.scorer.codec.decode(h.scorer.codec.encode(s)) for a, s in h.states.items()
            }  # type: ignore[misc]
        if steps is not None:
            limit = min(e["_ts"] for e in events[i:])
            for frac in steps[i]:
                wm = max(wm, wm + (limit - wm) * frac // 1000)
                h.advance_all(wm)
        clean = {k: v for k, v in copy.deepcopy(obj).items() if k != "_ts"}
        h.send(clean)
    for frac in end_steps:
        wm = max(wm, wm + (end - wm) * frac // 1000)
        h.advance_all(wm)
    h.advance_all(end)
    per_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in h.transitions:
        per_account[t["account_id"]].append(_strip(t))
    states = {a: h.scorer.codec.encode(s) for a, s in h.states.items()}
    return dict(per_account), states


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_advance_in_many_small_steps_equals_one_big_step(data: st.DataObject) -> None:
    events = data.draw(histories())
    steps = [
        data.draw(st.lists(st.integers(min_value=0, max_value=1000), max_size=3)) for _ in events
    ]
    end_steps = data.draw(st.lists(st.integers(min_value=0, max_value=1000), max_size=8))
    baseline, base_states = _run(events, None, [])
    stepped, stepped_states = _run(events, steps, end_steps)
    assert stepped == baseline
    assert stepped_states == base_states


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_state_codec_round_trip_gives_identical_transitions(data: st.DataObject) -> None:
    events = data.draw(histories())
    cut = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    assert _run(events, None, [], codec_at=cut) == _run(events, None, [])


def test_advance_property_is_not_vacuous() -> None:
    """The fixed history below produces time-triggered transitions, so the property above
    compares something."""
    events = [
        group("u1", "a", T0, {"employees": 50}, "g") | {"_ts": T0},
        track("Onboarding Completed", T0 + 1, account="a", mid="o") | {"_ts": T0 + 1},
        track("Invite Sent", T0 + 2, account="a", mid="i") | {"_ts": T0 + 2},
        track("Message Sent", T0 + 3, account="a", mid="m1") | {"_ts": T0 + 3},
        track("Message Sent", T0 + 4, account="a", mid="m2") | {"_ts": T0 + 4},
    ]
    out, _ = _run(events, None, [])
    kinds = [
        (t["kind"], t["segment"], t["trigger"], t["occurred_at"], t["score"]) for t in out["a"]
    ]
    assert kinds == [
        # onboarded 20 + one seat 10 = 30 < 40: stalled
        ("segment_entered", "stalled", "event", "2026-01-05T00:00:00.001Z", 30),
        # + invite 30 = 60
        ("segment_exited", "stalled", "event", "2026-01-05T00:00:00.002Z", 60),
        # + two messages 30 = 90 >= 70 and employees 50
        ("qualified", None, "event", "2026-01-05T00:00:00.004Z", 90),
        # msgs (2h, 5m buckets) leave at 02:05 -> 60; the seat (4h, 10m) at 04:10 -> 50: both
        # still >= 50 (exit is score < 50). The invite (12h, 30m) leaves at 12:30 -> 20.
        ("disqualified", None, "time", "2026-01-05T12:30:00.000Z", 20),
        ("segment_entered", "stalled", "time", "2026-01-05T12:30:00.000Z", 20),
        # the active day (2d window, 1d bucket) leaves at day 0 + 1d + 2d
        ("segment_exited", "stalled", "time", "2026-01-08T00:00:00.000Z", 20),
    ]
    stepped, _ = _run(events, [[500, 1000]] * 5, [1, 10, 100, 500, 999])
    assert stepped == out


def test_state_codec_round_trip_is_equal() -> None:
    h = Harness(PROP_MODEL)
    h.send(group("u1", "a", T0, {"employees": 50, "ignored": [1, 2]}))
    h.send(identify("u1", T0 + 1, {"title": "VP"}))
    for i in range(5):
        h.send(track("Message Sent", T0 + i * MIN, user=f"u{i}", account="a"))
        h.send(track("File Uploaded", T0 + i * HOUR, account="a", props={"size": 2.5}))
    h.send(track("Onboarding Completed", T0 + 6 * HOUR, account="a"))
    state = h.states["a"]
    codec = h.scorer.codec
    data = codec.encode(state)
    back = codec.decode(data)
    assert back == state
    assert back is not state
    assert codec.encode(back) == data
    assert back.traits == {"employees": 50}
    assert back.signals[3].buckets  # the float sums survived
    assert isinstance(back.signals[3].total, float) and back.signals[3].total == 12.5


def test_state_codec_reads_state_of_the_same_signals_only() -> None:
    h = Harness(PROP_MODEL)
    h.send(track("Message Sent", T0, account="a"))
    data = h.scorer.codec.encode(h.states["a"])
    # Another version, other rules: the same signals, so the same state.
    for text in (
        PROP.replace("version: 2", "version: 3"),
        PROP.replace("points: 20", "points: 25"),
    ):
        assert Scorer(model(text)).codec.decode(data) == h.states["a"]
    # Any signal changed (its window, its `where`, a new one, another order): not this state.
    for text in (
        PROP.replace("window: 2h}", "window: 3h}"),
        PROP.replace(
            '{count: "Invite Sent", window: 12h}',
            '{count: "Invite Sent", window: 12h, where: "n > 1"}',
        ),
        PROP.replace("  onboarded:", "  extra: {count: any}\n  onboarded:"),
        PROP.replace("  employees: {trait: employees}\n", "").replace(
            "score:", "  employees: {trait: employees}\nscore:"
        ),
    ):
        assert Scorer(model(text)).codec.decode(data) is None, text
    same = Scorer(model(PROP))
    assert same.codec.decode(data) == h.states["a"]
    assert same.codec.decode(None) is None
    assert same.codec.decode(b"") is None


def test_state_codec_reads_states_tagged_by_the_whole_model_and_retags_them() -> None:
    """States written before the tag named the signals carry the model's fingerprint."""
    h = Harness(PROP_MODEL)
    h.send(track("Message Sent", T0, account="a"))
    state = h.states["a"]
    old = msgspec.structs.replace(state, model=PROP_MODEL.fingerprint[:16])
    back = h.scorer.codec.decode(h.scorer.codec.encode(old))
    assert back is not None and back.model == h.scorer.model_tag
    assert h.scorer.codec.encode(back) == h.scorer.codec.encode(state)
    other = Scorer(model(PROP.replace("points: 20", "points: 25")))
    assert other.codec.decode(h.scorer.codec.encode(old)) is None  # another model's old tag


# -- ids -----------------------------------------------------------------------------------

ID_MODEL = """
name: ids
version: 1
signals:
  msgs: {count: "Message Sent", window: 1d}
qualify:
  when: "msgs >= 2"
segments:
  active: "msgs >= 1"
"""


def _history(prefix: str) -> list[dict[str, Any]]:
    return [
        track("Message Sent", T0, mid=f"{prefix}-1"),
        track("Message Sent", T0 + HOUR, mid=f"{prefix}-2"),
        track("Message Sent", T0 + HOUR, account="globex", mid=f"{prefix}-3"),
    ]


def _ids(prefix: str, now: float) -> list[dict[str, Any]]:
    h = Harness(ID_MODEL, now=lambda: now)
    for obj in _history(prefix):
        h.send(obj)
    h.advance_all(T0 + 5 * DAY)
    return h.transitions


def test_transition_ids_are_deterministic_and_independent_of_detected_at() -> None:
    first = _ids("m", T0 + 10 * DAY)
    again = _ids("m", T0 + 99 * DAY + 123)
    assert len(first) == 6
    assert [t["transition_id"] for t in first] == [t["transition_id"] for t in again]
    assert [t["detected_at"] for t in first] != [t["detected_at"] for t in again]
    assert first[0]["detected_at"] == "2026-01-15T00:00:00.000Z"
    assert len({t["transition_id"] for t in first}) == 6
    for t in first:
        assert re.fullmatch(r"[0-9a-f]{32}", t["transition_id"])


def test_different_message_ids_give_different_event_transition_ids() -> None:
    a = _ids("m", 0.0)
    b = _ids("n", 0.0)
    for x, y in zip(a, b, strict=True):
        assert (x["kind"], x["segment"], x["occurred_at"]) == (
            y["kind"],
            y["segment"],
            y["occurred_at"],
        )
        if x["trigger"] == "event":
            assert x["transition_id"] != y["transition_id"]
        else:  # time-triggered: no messageId involved
            assert x["transition_id"] == y["transition_id"]
    assert {t["trigger"] for t in a} == {"event", "time"}


def test_transition_id_covers_every_identifying_field() -> None:
    base = ("m", 1, "acme", "qualified", None, 1000, "x")
    ids = {transition_id(*base)}
    variants = [
        ("n", 1, "acme", "qualified", None, 1000, "x"),
        ("m", 2, "acme", "qualified", None, 1000, "x"),
        ("m", 1, "acme2", "qualified", None, 1000, "x"),
        ("m", 1, "acme", "disqualified", None, 1000, "x"),
        ("m", 1, "acme", "qualified", "seg", 1000, "x"),
        ("m", 1, "acme", "qualified", None, 1001, "x"),
        ("m", 1, "acme", "qualified", None, 1000, "y"),
        ("m", 1, "acme", "qualified", None, 1000, None),
    ]
    for v in variants:
        ids.add(transition_id(*v))  # type: ignore[arg-type]
    assert len(ids) == len(variants) + 1
    assert transition_id(*base) == transition_id(*base)  # type: ignore[arg-type]


def test_schema_validator_is_able_to_fail() -> None:
    t = next(t for t in _ids("m", 0.0) if t["kind"] == "qualified")
    assert not list(VALIDATOR.iter_errors(t))
    for broken in (
        t | {"trigger": "time"},  # time-triggered with a messageId
        t | {"segment": "active"},  # a segment on a qualified transition
        t | {"occurred_at": "yesterday"},  # format checked
        t | {"detected_at": "2026-02-30T00:00:00.000Z"},  # calendar checked
        t | {"occurred_at": "2026-01-05 10:00:00"},  # not RFC 3339
        t | {"transition_id": "XYZ"},
        t | {"extra": 1},
    ):
        assert list(VALIDATOR.iter_errors(broken)), broken


def _datetime_iso_ms(epoch_ms: int | float) -> str:
    """The reference `iso_ms` reproduces: datetime's own conversion and formatting."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@settings(max_examples=2000, deadline=None)
@given(
    ms=st.integers(min_value=0, max_value=4_100_000_000_000)
    | st.floats(min_value=0.0, max_value=4.1e12)
    | st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000).flatmap(
        lambda ms: st.sampled_from([0.0, 0.0005, 0.00049999, 0.9994999999, 0.9995, 0.9999995]).map(
            lambda frac: ms + frac
        )
    )
)
def test_iso_ms_matches_datetime(ms: int | float) -> None:
    assert iso_ms(ms) == _datetime_iso_ms(ms)


def test_iso_ms_edges() -> None:
    for ms in (0, 1, 999, 59_999, 60_000, 86_399_999, 3_999_999_999_999, 4_000_000_000_000, -1):
        assert iso_ms(ms) == _datetime_iso_ms(ms)
    for f in (0.0, 0.0005, 0.9999995, 999.9999995, 1_767_225_599_999.9996, -0.5, 4.1e12):
        assert iso_ms(f) == _datetime_iso_ms(f)
    assert iso_ms(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"


def test_the_state_keeps_the_last_transitions_of_the_live_model() -> None:
    """What the lookup API shows as an account's last transitions: the newest five, oldest
    first, with their ids; they survive encoding."""
    h = Harness(PROP)
    h.send(group("u1", "acme", T0, {"employees": 50}))
    for burst in range(4):  # busy (3 messages a day) entered, then left, four times
        for i in range(3):
            h.send(track("Message Sent", T0 + burst * 3 * DAY + i * MIN))
        h.advance("acme", T0 + burst * 3 * DAY + 2 * DAY)
    emitted = [t for t in h.transitions if t["account_id"] == "acme"]
    assert len(emitted) > 5
    state = h.states["acme"]
    assert [list(recent_transition(e)) for e in state.recent] == [
        [int(datetime.fromisoformat(t["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000),
         t["kind"], t["segment"], t["transition_id"]]
        for t in emitted[-5:]
    ]  # fmt: skip
    codec = h.scorer.codec
    again = codec.decode(codec.encode(state))
    assert again is not None and again.recent == state.recent
