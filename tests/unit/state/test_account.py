"""The per-account memory bound: state size depends on window/bucket counts and distinct users,
never on the number of events; user-keyed signals saturate at MAX_KEYS_PER_SIGNAL."""

from __future__ import annotations

import msgspec

from streams.events.types import Event, EventType
from streams.model.loader import parse_model
from streams.scoring.engine import Scorer
from streams.state import dedup
from streams.state.account import MAX_KEYS_PER_SIGNAL, AccountState, StateCodec

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z

MODEL = parse_model(
    """
name: bounded
version: 1
signals:
  msgs:      {count: "Message Sent", window: 30d}
  storage:   {sum: "File Uploaded", property: size, window: 90d, bucket: 1d}
  recent:    {count: any, window: 7d}
  days:      {active_days: any, window: 14d}
  seats:     {distinct_users: any, window: 7d}
  everyone:  {distinct_users: any}
  lifetime:  {count: any}
  onboarded: {ever: "Onboarding Completed"}
  employees: {trait: employees}
qualify:
  when: "msgs >= 10"
segments:
  busy: "recent >= 100"
"""
)
NAMES = ["Message Sent", "File Uploaded", "Onboarding Completed", "Other"]
USERS = [f"user-{i:02d}" for i in range(20)]

# msgpack upper bounds: an int or float is at most 9 bytes, a short string 1 + len bytes.
ENTRY = 9 + 9  # one bucket: index -> amount
OVERHEAD = 512  # model tag, scalar fields, per-signal struct headers, totals, one trait


def _bucket_limits() -> dict[int, int]:
    """Signal index -> most buckets it can hold: window / bucket + 1."""
    out = {}
    for i, s in enumerate(MODEL.signals):
        if s.window_ms is not None and s.kind.value != "distinct_users":
            assert s.bucket_ms is not None and s.window_ms % s.bucket_ms == 0
            out[i] = s.window_ms // s.bucket_ms + 1
    return out


LIMITS = _bucket_limits()
USER_KEYED = [i for i, s in enumerate(MODEL.signals) if s.kind.value == "distinct_users"]
BOUND = (
    OVERHEAD + ENTRY * sum(LIMITS.values()) + len(USER_KEYED) * sum(1 + len(u) + 9 for u in USERS)
)


# messageId de-duplication (streams.state.dedup): 8 bytes per signal-changing event within the
# horizon (100k events a year: 274 of them in 24 h), plus one [hour, count] run (<= 12 bytes)
# per hour of the horizon.
DEDUP_BOUND = 8 * (100_000 * dedup.HORIZON_MS // (365 * DAY) + 1) + 12 * (
    dedup.HORIZON_MS // HOUR + 2
)


def test_limits_follow_from_the_default_bucket_sizes() -> None:
    # 30d -> 1d buckets (31), 90d/1d (91), 7d -> 6h (29), active_days 14d/1d (15)
    assert sorted(LIMITS.values()) == [15, 29, 31, 91]
    assert BOUND < 5_000


def _event(i: int, ts: int) -> Event:
    name = NAMES[i % len(NAMES)]
    user = USERS[(i * 7) % len(USERS)]
    props = {"size": (i % 13) + 0.5} if name == "File Uploaded" else {}
    return Event(EventType.TRACK, f"m{i}", ts, user, "acme", name, props, {})


def test_100k_events_over_a_year_stay_under_the_bound() -> None:
    scorer = Scorer(MODEL, now_ms=lambda: 0.0)
    state: AccountState | None = None
    n = 100_000
    step = 365 * DAY // n
    sizes = []
    group = Event(EventType.GROUP, "g", T0, "user-00", "acme", None, {}, {"employees": 12})
    state = scorer.apply("acme", None, group).state
    for i in range(n):
        state = scorer.apply("acme", state, _event(i, T0 + i * step)).state
        if i % 2_000 == 0 or i == n - 1:
            for idx, limit in LIMITS.items():
                assert len(state.signals[idx].buckets) <= limit, (i, MODEL.signals[idx].name)
            for idx in USER_KEYED:
                assert len(state.signals[idx].keys) <= len(USERS)
            sizes.append(len(scorer.codec.encode(state)))
    assert max(sizes) <= BOUND + DEDUP_BOUND, (max(sizes), BOUND, DEDUP_BOUND)
    # It really is full (so the bound is not vacuous): every window holds its span of buckets.
    assert len(state.signals[0].buckets) >= 30  # msgs, 30d of daily buckets
    assert len(state.signals[1].buckets) >= 90  # storage
    assert scorer.plan.values(state)["lifetime"] == n
    # No growth with the number of events: the second half is no bigger than the first.
    assert max(sizes[len(sizes) // 2 :]) <= max(sizes[: len(sizes) // 2]) + 4 * ENTRY


def _users_model() -> Scorer:
    m = parse_model(
        """
name: many-users
version: 1
signals:
  seats:    {distinct_users: any, window: 1d}
  everyone: {distinct_users: any}
  vps:      {users_with_trait: title, in: ["VP"]}
qualify:
  when: "seats >= 1"
"""
    )
    return Scorer(m, now_ms=lambda: 0.0)


def test_user_keyed_signals_stop_at_max_keys_per_signal() -> None:
    scorer = _users_model()
    extra = 5
    state = None
    for i in range(MAX_KEYS_PER_SIGNAL + extra):
        ev = Event(EventType.TRACK, f"t{i}", T0 + i, f"u{i}", "acme", "Used", {}, {})
        state = scorer.apply("acme", state, ev).state
        idn = Event(EventType.IDENTIFY, f"i{i}", T0 + i, f"u{i}", "acme", None, {}, {"title": "VP"})
        state = scorer.apply("acme", state, idn).state
    assert state is not None
    v = scorer.plan.values(state)
    assert (v["seats"], v["everyone"], v["vps"]) == (MAX_KEYS_PER_SIGNAL,) * 3
    for ss in state.signals:
        assert len(ss.keys) == MAX_KEYS_PER_SIGNAL
        assert f"u{MAX_KEYS_PER_SIGNAL}" not in ss.keys  # the first user past the cap
    # Once a user leaves the trait set, a new one can take the slot.
    leave = Event(EventType.IDENTIFY, "x", T0 + DAY // 2, "u0", "acme", None, {}, {"title": "CEO"})
    state = scorer.apply("acme", state, leave).state
    join = Event(EventType.IDENTIFY, "y", T0 + DAY // 2, "new", "acme", None, {}, {"title": "VP"})
    state = scorer.apply("acme", state, join).state
    assert scorer.plan.values(state)["vps"] == MAX_KEYS_PER_SIGNAL
    assert "new" in state.signals[2].keys and "u0" not in state.signals[2].keys
    # Once the windowed users expire, new users count again; the lifetime signal stays full.
    ev = Event(EventType.TRACK, "z", T0 + 3 * DAY, "late-comer", "acme", "Used", {}, {})
    state = scorer.apply("acme", state, ev).state
    v = scorer.plan.values(state)
    assert (v["seats"], v["everyone"]) == (1, MAX_KEYS_PER_SIGNAL)
    # Bounded bytes too: 10,000 short keys per signal, not more.
    size = len(scorer.codec.encode(state))
    assert size <= 512 + 3 * MAX_KEYS_PER_SIGNAL * (1 + 6 + 9)


def test_summary_reads_what_decode_reads() -> None:
    """`StateCodec.summary` (used to index restored accounts) gives the same leading fields as a
    full decode, for states with and without trailing defaults, and None for another model's."""
    scorer = Scorer(MODEL, now_ms=lambda: 0.0)
    codec = scorer.codec
    states = [scorer.new_state()]  # everything after `signals` is a default (omitted)
    state: AccountState | None = None
    for i in range(200):
        state = scorer.apply("acme", state, _event(i, T0 + i * DAY // 10)).state
        if i in (0, 50, 199):
            states.append(msgspec.structs.replace(state))
    assert any(s.pql for s in states) and any(not s.pql for s in states)
    for s in states:
        data = codec.encode(s)
        full, head = codec.decode(data), codec.summary(data)
        assert full is not None and head is not None
        got = (head.model, head.clock, head.first_seen, head.next_expiry, head.score, head.pql)
        want = (full.model, full.clock, full.first_seen, full.next_expiry, full.score, full.pql)
        assert got == want
        assert head.segments == full.segments
    other = StateCodec("another-model")
    assert other.summary(codec.encode(states[-1])) is None
    assert codec.summary(b"") is None
