"""Incremental evaluation gives exactly what a full evaluation gives.

The scorer keeps each account's last decision in memory (`EvalCache`, attached to the state but
never encoded) and re-evaluates only what reads a signal that changed. The full evaluation
(`Scorer(model, incremental=False)`) is the reference: on random event sequences — tracks with
random properties, identify and group calls, late and too-late events, time advancing, states
re-decoded from bytes as the worker does when its cache drops an account — both must emit the
same transitions and leave the same state bytes after every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.backtest.runner import Backtest
from streams.events.parse import event_from_obj
from streams.events.types import Event
from streams.model.loader import load_model
from streams.model.spec import Model, Segment, SignalKind
from streams.scoring.engine import Scorer
from streams.scoring.evaluate import EvalCache
from streams.state.account import AccountState

from .util import DAY, FIXED_NOW, HOUR, SEC, T0, iso, model, track

assert T0 is not None
START: int = T0

ROOT = Path(__file__).resolve().parents[3]

# Hysteresis that flips on every evaluation (exit holds whenever enter does: a PQL status is
# then an input that changes although no value did), graded points with
# float steps and negative caps, traits, user traits, segments reading score, pql and segments.
FLIP = """
name: flip
version: 1
signals:
  a: {count: A, window: 1d, bucket: 1h}
  b: {sum: B, property: n, where: "k != 'x'", window: 2d}
  u: {distinct_users: any, window: 1d}
  e: {ever: E}
  t: {trait: plan}
  w: {users_with_trait: title, in: [VP, CTO]}
  d: {active_days: any, window: 3d}
  life: {count: [A, B]}
score:
  - {when: "a >= 2", points: 10}
  - {per: b, every: 2.5, points: 1.5, max: 12}
  - {per: u, every: 1, points: -1, max: -3}
  - {when: "e and t == 'pro'", points: 7}
  - {when: "w >= 1 or life > 3", points: 4.25}
qualify:
  when: "score >= 5"
  exit: "score >= 5"
segments:
  s1: "pql"
  s2: "score > 5 and not s1"
  s3: "s2 or d >= 2"
  s4: "t == 'pro' and not s3"
"""

# No exit (no hysteresis), no score rules at all, a segment chain.
PLAIN = """
name: plain
version: 2
signals:
  a: {count: A, window: 2d}
  seats: {distinct_users: [A, B]}
  size: {trait: employees}
qualify:
  when: "a >= 3 and size >= 10"
segments:
  big: "size >= 100"
  busy: "a >= 5"
  both: "big and busy"
  pql_not_big: "pql and not both"
"""

MODELS: dict[str, Model] = {
    "flip": model(FLIP),
    "plain": model(PLAIN),
    **{p.stem: load_model(p) for p in sorted((ROOT / "examples").glob("*.yaml"))},
}

PROPERTY_VALUES = [None, 0, 1, 2, 2.5, 5, 7, 100, 4500, 0.1, -1, True, "x", "5"]
TRAIT_VALUES = [
    None,
    "pro",
    "free",
    10,
    20,
    1000,
    5000,
    3.5,
    "finance",
    "software",
    "US",
    "DE",
    "VP",
    "CTO",
    "VP Sales",
    "Head of Marketing",
]
# Mostly small steps (values build up inside windows), some large (windows empty), some back.
STEPS_MS = [0, SEC, SEC, HOUR, HOUR, 6 * HOUR, DAY, 3 * DAY, 10 * DAY, 40 * DAY, -HOUR, -3 * DAY]
USERS = ["u1", "u2", "u3", "u4"]
ACCOUNTS = ["acme", "globex", None]


def _vocabulary(m: Model) -> tuple[list[str], list[str], list[str]]:
    """(event names, property names, trait names) the model reads, plus ones it does not."""
    events: set[str] = set()
    props = {"other"}
    traits = {"other"}
    for s in m.signals:
        events |= s.events or set()
        if s.where is not None:
            props |= s.where.names
        if s.property:
            props.add(s.property)
        if s.kind in (SignalKind.TRAIT, SignalKind.USERS_WITH_TRAIT) and s.trait:
            traits.add(s.trait)
    return [*sorted(events), "Other"], sorted(props), sorted(traits)


def _steps(m: Model) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    events, props, traits = _vocabulary(m)
    dt = st.sampled_from(STEPS_MS)
    user = st.sampled_from(USERS)
    some_props = st.dictionaries(st.sampled_from(props), st.sampled_from(PROPERTY_VALUES))
    some_traits = st.dictionaries(st.sampled_from(traits), st.sampled_from(TRAIT_VALUES))
    model_events = st.sampled_from(events[:-1] if len(events) > 1 else events)
    acme = st.tuples(st.just("track"), dt, model_events, user, st.just("acme"), some_props)
    step = st.one_of(
        # Mostly tracks of the events the model reads on one account, so scores build up.
        acme,
        acme,
        acme,
        acme,
        st.tuples(
            st.just("track"),
            dt,
            st.sampled_from(events),
            user,
            st.sampled_from(ACCOUNTS),
            some_props,
        ),
        st.tuples(st.just("identify"), dt, user, some_traits),
        st.tuples(st.just("group"), dt, user, st.sampled_from(ACCOUNTS[:2]), some_traits),
        st.tuples(st.just("advance"), dt),
        st.tuples(st.just("redecode"), st.sampled_from(ACCOUNTS[:2])),
    )
    return st.lists(step, min_size=3, max_size=60)


def _event(step: tuple[Any, ...], ts: int, n: int) -> Event:
    kind = step[0]
    obj: dict[str, Any]
    if kind == "track":
        _, _, name, user, account, props = step
        obj = track(name, ts, user=user, account=account, props=props, mid=f"m{n}")
    elif kind == "identify":
        _, _, user, traits = step
        obj = {"type": "identify", "userId": user, "timestamp": iso(ts), "traits": traits}
        obj["messageId"] = f"i{n}"
    else:
        _, _, user, account, traits = step
        obj = {"type": "group", "userId": user, "groupId": account, "timestamp": iso(ts)}
        obj |= {"traits": traits, "messageId": f"g{n}"}
    ev = event_from_obj(obj)
    assert isinstance(ev, Event), ev
    return ev


class Side:
    """A backtest whose scorer evaluates incrementally or always in full."""

    def __init__(self, m: Model, incremental: bool) -> None:
        self.transitions: list[dict[str, Any]] = []
        self.bt = Backtest(m, sink=self.transitions.append, now_ms=lambda: FIXED_NOW)
        self.bt.scorer = Scorer(m, now_ms=lambda: FIXED_NOW, incremental=incremental)

    def state_bytes(self) -> dict[str, bytes]:
        codec = self.bt.scorer.codec
        return {a: codec.encode(s) for a, s in sorted(self.bt.states.items())}


def _check(m: Model, steps: list[tuple[Any, ...]]) -> None:
    fast, full = Side(m, True), Side(m, False)
    assert fast.bt.scorer.incremental and not full.bt.scorer.incremental
    ts = START
    for n, step in enumerate(steps):
        if step[0] == "redecode":
            # The worker may drop an account from its cache and decode it afresh from bytes.
            states = fast.bt.states
            if step[1] in states:
                codec = fast.bt.scorer.codec
                states[step[1]] = codec.decode(codec.encode(states[step[1]]))  # type: ignore[assignment]
            continue
        ts = max(ts + step[1], 0)
        for side in (fast, full):
            if step[0] == "advance":
                side.bt.advance_watermark(ts)
            else:
                side.bt.apply_event(_event(step, ts, n))
        assert fast.transitions == full.transitions, n
        assert fast.state_bytes() == full.state_bytes(), n
    for side in (fast, full):
        side.bt.finish(ts + 100 * DAY)
    assert fast.transitions == full.transitions
    assert fast.state_bytes() == full.state_bytes()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_incremental_equals_full_evaluation(name: str) -> None:
    m = MODELS[name]

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(_steps(m))
    def run(steps: list[tuple[Any, ...]]) -> None:
        _check(m, steps)

    run()


def test_the_incremental_path_is_taken() -> None:
    side = Side(MODELS["flip"], True)
    for i in range(3):
        side.bt.apply_event(_event(("track", 0, "A", "u1", "acme", {}), START + i * SEC, i))
    state = side.bt.states["acme"]
    assert isinstance(state.__dict__.get("_eval_cache"), EvalCache)


def test_the_cache_is_never_encoded() -> None:
    """A state with an evaluation cache attached encodes to the same bytes as one without."""
    side = Side(MODELS["team-chat"], True)
    for i, name in enumerate(["Message Sent", "Invite Sent", "Onboarding Completed"]):
        side.bt.apply_event(_event(("track", 0, name, "u1", "acme", {}), START + i * SEC, i))
    state = side.bt.states["acme"]
    assert state.__dict__, "expected a cache on the state"
    codec = side.bt.scorer.codec
    with_cache = codec.encode(state)
    plain = msgspec.structs.replace(state)  # a copy without the undeclared attribute
    assert not plain.__dict__
    assert with_cache == codec.encode(plain)
    assert with_cache == msgspec.msgpack.encode(state)
    decoded = codec.decode(with_cache)
    assert decoded == state and decoded is not None and not decoded.__dict__
    assert msgspec.to_builtins(state) == msgspec.to_builtins(plain)


def test_a_state_changed_behind_the_scorers_back_is_evaluated_in_full() -> None:
    fast, full = Side(MODELS["weighted"], True), Side(MODELS["weighted"], False)
    names = ["Onboarding Completed", "Invite Sent"] + ["Core Feature Used"] * 5
    for side in (fast, full):
        for i, name in enumerate(names):
            side.bt.apply_event(_event(("track", 0, name, "u1", "acme", {}), START + i * SEC, i))
        state: AccountState = side.bt.states["acme"]
        assert state.pql
        state.pql = False  # e.g. a repair tool resetting the status
        side.bt.apply_event(
            _event(("track", 0, "Core Feature Used", "u1", "acme", {}), START + DAY, 99)
        )
    assert fast.transitions == full.transitions
    assert fast.transitions[-1]["kind"] == "qualified"
    assert fast.state_bytes() == full.state_bytes()


def test_a_model_reading_names_not_yet_computed_is_always_evaluated_in_full() -> None:
    """Built by hand (the loader refuses it): a segment reading a segment below it."""
    m = MODELS["plain"]
    first, *rest = m.segments
    bad = Segment(first.name, rest[-1].expr, first.line)
    hand_built = Model(
        **{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "segments": (bad, *rest)}
    )
    assert not Scorer(hand_built).incremental
    assert Scorer(m).incremental
