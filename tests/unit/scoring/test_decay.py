"""Score decay (issue 15 item 3): a count or sum with a `half_life` weighs each bucket of its
window by 0.5 ** (age / half_life), from the same buckets, so points fade with the age of the
events behind them, the same in the backtest and the worker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.model.loader import check_model
from streams.model.spec import signal_key, state_fingerprint
from streams.scoring.switch import signal_changes
from streams.state.account import StateCodec
from tests.unit.scoring.util import DAY, HOUR, T0, Harness, iso, model, track

DECAY = """\
name: decay
version: 1
signals:
  messages: {count: "Message Sent", window: 30d, half_life: 2d}
  storage:  {sum: "File Uploaded", property: mb, window: 30d, half_life: 1d}
score:
  - {per: messages, every: 1, points: 10, max: 100}
qualify:
  when: "score >= 40"
  exit: "score < 20"
"""


def test_a_half_life_weighs_each_bucket_by_its_age() -> None:
    h = Harness(DECAY)
    for day, n in ((0, 4), (2, 2), (4, 1)):
        for i in range(n):
            h.send(track("Message Sent", T0 + day * DAY + i * HOUR))
    # At day 4: 4 messages two half-lives old, 2 one half-life old, 1 new.
    assert h.value("messages") == 4 * 0.25 + 2 * 0.5 + 1
    h.send(track("File Uploaded", T0 + 4 * DAY + 5 * HOUR, props={"mb": 10}))
    assert h.value("storage") == 10.0
    # Ages count in whole buckets (1d): the same value all day long...
    h.advance("acme", T0 + 5 * DAY - 1)
    assert h.value("storage") == 10.0
    # ...and half of it from the next day's first instant.
    h.advance("acme", T0 + 5 * DAY)
    assert h.value("storage") == 5.0
    assert h.value("messages") == pytest.approx(4 * 2**-2.5 + 2 * 2**-1.5 + 2**-0.5, abs=1e-3)
    assert h.value("messages") == round(h.value("messages"), 3)


def test_decay_alone_disqualifies_at_a_bucket_boundary() -> None:
    h = Harness(DECAY)
    out = []
    for i in range(5):
        out += h.send(track("Message Sent", T0 + 10 * HOUR + i))
    assert [t["kind"] for t in out] == ["qualified"]  # 40 points at the 4th message
    assert "4 × Message Sent in the last 30 days, with a half-life of 2 days" in (out[0]["summary"])
    # 5 messages: 50 points; a day later 3.536 (30 points: `per` counts whole messages), two
    # days 2.5 (20, not below the exit), three 1.768 (10).
    assert h.advance("acme", T0 + 3 * DAY - 1) == []
    (gone,) = h.advance("acme", T0 + 3 * DAY)
    assert (gone["kind"], gone["trigger"], gone["occurred_at"]) == (
        "disqualified",
        "time",
        iso(T0 + 3 * DAY),
    )
    assert gone["signals"]["messages"] == 1.768 and gone["score"] == 10


def test_the_state_schedules_every_boundary_while_the_window_holds_something() -> None:
    h = Harness(DECAY)
    h.send(track("Message Sent", T0 + 10 * HOUR))
    state = h.states["acme"]
    assert state.next_expiry == T0 + DAY
    h.advance("acme", T0 + 7 * DAY + HOUR)
    assert state.next_expiry == T0 + 8 * DAY
    # Past the window (30d + its bucket) nothing is left, and nothing is scheduled.
    h.advance("acme", T0 + 32 * DAY)
    assert h.value("messages") == 0.0
    assert h.scorer.next_expiry(state) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20 * 24), st.integers(1, 9)), min_size=1, max_size=30))
def test_the_value_does_not_depend_on_the_order_events_arrive_in(
    events: list[tuple[int, int]],
) -> None:
    """fsum is correctly rounded: late events (out of order, inside the window) give the same
    value as ordered ones, as a worker reading partitions at uneven speeds must."""
    shuffled = list(enumerate(events))
    random.Random(len(events)).shuffle(shuffled)
    values = []
    for order in (list(enumerate(events)), shuffled):
        h = Harness(DECAY)
        for i, (hours, mb) in order:
            h.send(track("File Uploaded", T0 + hours * HOUR, props={"mb": mb / 7}, mid=f"f{i}"))
        h.advance("acme", T0 + 21 * DAY)
        values.append(h.value("storage"))
    assert values[0] == values[1]


def test_a_restart_keeps_the_decay() -> None:
    h = Harness(DECAY)
    for i in range(3):
        h.send(track("Message Sent", T0 + i * DAY))
    codec = StateCodec(h.scorer.model_tag)
    again = codec.decode(codec.encode(h.states["acme"]))
    assert again is not None
    assert h.scorer.plan.values(again)["messages"] == h.value("messages") == 2.207


def test_the_half_life_is_part_of_the_signal() -> None:
    decayed = model(DECAY)
    plain = model(DECAY.replace(", half_life: 2d", ""))
    assert state_fingerprint(decayed) != state_fingerprint(plain)
    assert signal_changes(plain, decayed) == [
        "signal 'messages' changed: count; events Message Sent; window 2592000000 ms, bucket "
        "86400000 ms -> count; events Message Sent; window 2592000000 ms, bucket 86400000 ms; "
        "half-life 172800000 ms"
    ]
    # A signal without one keeps the key it always had (so kept state keeps its tag).
    assert "half_life" not in signal_key(plain.signals[0])
    assert signal_key(plain.signals[0]).startswith('["messages", "count", ["Message Sent"]')


@pytest.mark.parametrize(
    "signal, message",
    [
        (
            "{distinct_users: any, window: 7d, half_life: 2d}",
            "'half_life' only applies to windowed count and sum signals (their buckets decay)",
        ),
        (
            '{count: "Message Sent", half_life: 2d}',
            "'half_life' needs a 'window': the decay weighs the window's buckets",
        ),
        (
            '{count: "Message Sent", window: 7d, half_life: soon}',
            "invalid duration 'soon': expected a whole number and a unit, like '45s', '15m', "
            "'12h', '30d' or '2w'",
        ),
    ],
)
def test_half_life_errors_name_the_line_and_field(signal: str, message: str) -> None:
    text = DECAY.replace('{count: "Message Sent", window: 30d, half_life: 2d}', signal)
    found = [(i.line, i.field, i.message) for i in check_model(text)]
    assert (4, "signals.messages.half_life", message) in found, found
