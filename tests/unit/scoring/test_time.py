"""Time semantics: windows sliding at their exact edges, inactivity drop-out through `advance`,
late events, hysteresis, segments and graded points."""

from __future__ import annotations

from streams.events.parse import event_from_obj
from streams.events.types import Event, RejectReason
from streams.scoring.evaluate import Evaluator
from tests.unit.scoring.util import DAY, HOUR, MIN, T0, Harness, brief, iso, model, track

EDGE = """
name: edge
version: 1
signals:
  msgs: {count: "Message Sent", window: 1d}
qualify:
  when: "msgs >= 1"
"""


def test_event_expires_exactly_at_bucket_end_plus_window() -> None:
    h = Harness(EDGE)
    assert h.model.signal("msgs").bucket_ms == HOUR  # largest standard bucket <= 1d/24
    t = T0 + 7 * HOUR + 30 * MIN  # bucket T0/HOUR + 7
    [q] = h.send(track("Message Sent", t, mid="m-1"))
    assert brief(q) == ("qualified", None, "acme", iso(t), 0, "event", "m-1")
    expiry = T0 + 8 * HOUR + DAY  # (bucket + 1) * bucket_ms + window
    assert h.scorer.next_expiry(h.states["acme"]) == expiry
    assert h.advance("acme", expiry - 1) == []  # one ms before: still held
    assert h.value("msgs") == 1
    [d] = h.advance("acme", expiry)  # exactly at: gone
    assert brief(d) == ("disqualified", None, "acme", iso(expiry), 0, "time", None)
    assert d["pql"] is False and d["signals"] == {"msgs": 0}
    assert h.scorer.next_expiry(h.states["acme"]) is None


def test_occurred_at_is_the_expiry_instant_not_the_watermark() -> None:
    h = Harness(EDGE)
    h.send(track("Message Sent", T0 + 5 * MIN))
    [d] = h.advance("acme", T0 + 90 * DAY)
    assert brief(d) == ("disqualified", None, "acme", iso(T0 + HOUR + DAY), 0, "time", None)
    assert h.states["acme"].clock == T0 + HOUR + DAY  # the clock moves to the expiry only


def test_event_exactly_at_expiry_instant_sees_the_expiry_first() -> None:
    h = Harness(EDGE)
    h.send(track("Message Sent", T0 + 5 * MIN, mid="m-1"))
    exp = T0 + HOUR + DAY
    out = h.send(track("Message Sent", exp, mid="m-2"))
    assert [brief(t) for t in out] == [
        ("disqualified", None, "acme", iso(exp), 0, "time", None),
        ("qualified", None, "acme", iso(exp), 0, "event", "m-2"),
    ]
    assert out[0]["transition_id"] != out[1]["transition_id"]
    # One ms before the expiry the event simply adds to the window: no transition.
    h2 = Harness(EDGE)
    h2.send(track("Message Sent", T0 + 5 * MIN))
    assert h2.send(track("Message Sent", exp - 1)) == []
    assert h2.value("msgs") == 2


INACTIVE = """
name: inactive
version: 4
signals:
  msgs: {count: "Message Sent", window: 30d}
score:
  - {when: "msgs >= 3", points: 100, name: three messages}
qualify:
  when: "score >= 100"
"""


def test_inactivity_drop_out_through_advance() -> None:
    h = Harness(INACTIVE)
    h.send(track("Message Sent", T0 + 9 * HOUR, mid="a"))
    h.send(track("Message Sent", T0 + DAY + 9 * HOUR, mid="b"))
    [q] = h.send(track("Message Sent", T0 + 2 * DAY + 9 * HOUR, mid="c"))
    assert brief(q) == ("qualified", None, "acme", iso(T0 + 2 * DAY + 9 * HOUR), 100, "event", "c")
    assert q["previous_score"] == 0
    assert q["reasons"] == [{"rule": "three messages", "points": 100, "signals": {"msgs": 3}}]
    assert q["condition"] == {"expr": "qualify.when: score >= 100", "values": {"score": 100}}
    assert q["model"] == {
        "name": "inactive",
        "version": 4,
        "effective_from": "1970-01-01T00:00:00.000Z",
    }
    # Quiet from now on. The first message's day bucket leaves at T0 + 1d + 30d.
    assert h.advance("acme", T0 + 31 * DAY - 1) == []
    [d] = h.advance("acme", T0 + 31 * DAY)
    assert brief(d) == ("disqualified", None, "acme", iso(T0 + 31 * DAY), 0, "time", None)
    assert d["previous_score"] == 100
    assert d["reasons"] == []
    assert d["signals"] == {"msgs": 2}
    assert d["condition"] == {"expr": "not qualify.when: score >= 100", "values": {"score": 0}}
    # The other two expire silently (no change of status -> nothing emitted).
    assert h.advance("acme", T0 + 60 * DAY) == []
    assert h.value("msgs") == 0


HYST = """
name: hyst
version: 1
signals:
  pts: {sum: "Points", property: n, window: 30d}
score:
  - {per: pts, every: 1, points: 1}
qualify:
  when: "score >= 100"
  exit: "score < 80"
"""


def test_hysteresis_enter_at_100_stay_at_85_leave_at_79() -> None:
    h = Harness(HYST)
    seq = [
        (99, []),
        (1, ["qualified"]),
        (-15, []),
        (-6, ["disqualified"]),
        (20, []),
        (1, ["qualified"]),
    ]
    scores = []
    for i, (n, kinds) in enumerate(seq):
        out = h.send(track("Points", T0 + i * MIN, props={"n": n}, mid=f"p{i}"))
        assert [t["kind"] for t in out] == kinds, (i, n)
        scores.append(h.states["acme"].score)
    assert scores == [99, 100, 85, 79, 99, 100]
    assert h.transitions[1]["condition"] == {
        "expr": "qualify.exit: score < 80",
        "values": {"score": 79},
    }
    assert h.transitions[1]["previous_score"] == 85


def test_without_exit_leaving_is_not_when() -> None:
    h = Harness(HYST.replace('  exit: "score < 80"\n', ""))
    h.send(track("Points", T0, props={"n": 100}))
    [d] = h.send(track("Points", T0 + 1, props={"n": -1}, mid="x"))
    assert brief(d) == ("disqualified", None, "acme", iso(T0 + 1), 99, "event", "x")


SEG = """
name: seg
version: 1
signals:
  msgs: {count: "Message Sent", window: 1d}
  plan: {trait: plan}
score:
  - {per: msgs, every: 1, points: 10}
qualify:
  when: "msgs >= 3"
  exit: "msgs < 1"
segments:
  busy: "msgs >= 2"
  quiet_pql: "pql and msgs < 3"
  paid: {when: "plan == 'pro'", description: paying}
  paid_busy: "paid and busy"
"""


def test_segments_enter_and_exit_including_pql_and_earlier_segments() -> None:
    h = Harness(SEG)
    assert h.send(track("Message Sent", T0 + 10 * MIN, mid="a")) == []
    out = h.send(track("Message Sent", T0 + 20 * MIN, mid="b"))
    assert [brief(t) for t in out] == [
        ("segment_entered", "busy", "acme", iso(T0 + 20 * MIN), 20, "event", "b")
    ]
    assert out[0]["condition"] == {"expr": "segments.busy: msgs >= 2", "values": {"msgs": 2}}
    out = h.send(track("Message Sent", T0 + 70 * MIN, mid="c"))  # next hour bucket
    assert [brief(t) for t in out] == [
        ("qualified", None, "acme", iso(T0 + 70 * MIN), 30, "event", "c")
    ]
    assert out[0]["segments"] == ["busy"]
    # The first two leave at T0 + 1h + 1d: still a PQL (exit is msgs < 1), now quiet_pql.
    out = h.advance("acme", T0 + 3 * DAY)
    first, last = T0 + HOUR + DAY, T0 + 2 * HOUR + DAY
    assert [brief(t) for t in out] == [
        ("segment_exited", "busy", "acme", iso(first), 10, "time", None),
        ("segment_entered", "quiet_pql", "acme", iso(first), 10, "time", None),
        ("disqualified", None, "acme", iso(last), 0, "time", None),
        ("segment_exited", "quiet_pql", "acme", iso(last), 0, "time", None),
    ]
    assert out[1]["pql"] is True and out[1]["segments"] == ["quiet_pql"]
    assert out[1]["condition"] == {
        "expr": "segments.quiet_pql: pql and msgs < 3",
        "values": {"msgs": 1, "pql": True},
    }
    assert out[3]["segments"] == []


def test_trait_segments_and_segments_reading_segments() -> None:
    from tests.unit.scoring.util import group

    h = Harness(SEG)
    out = h.send(group("u1", "acme", T0, {"plan": "pro"}, mid="g1"))
    assert [brief(t) for t in out] == [
        ("segment_entered", "paid", "acme", iso(T0), 0, "event", "g1")
    ]
    h.send(track("Message Sent", T0 + 1))
    out = h.send(track("Message Sent", T0 + 2, mid="b"))
    assert [(t["kind"], t["segment"]) for t in out] == [
        ("segment_entered", "busy"),
        ("segment_entered", "paid_busy"),
    ]
    out = h.send(group("u1", "acme", T0 + 3, {"plan": "free"}, mid="g2"))
    assert [(t["kind"], t["segment"], t["segments"]) for t in out] == [
        ("segment_exited", "paid", ["busy"]),
        ("segment_exited", "paid_busy", ["busy"]),
    ]


def test_per_rule_graded_points_with_cap() -> None:
    m = model(
        """
        name: graded
        version: 1
        signals:
          messages: {count: "Message Sent"}
          neg: {count: "Spam"}
        score:
          - {per: messages, every: 100, points: 5, max: 40}
          - {per: neg, every: 2, points: -10, max: -30}
        qualify:
          when: "score >= 40"
        """
    )
    ev = Evaluator(m)
    cases = {0: 0, 99: 0, 100: 5, 199: 5, 250: 10, 799: 35, 800: 40, 801: 40, 5000: 40}
    for n, want in cases.items():
        assert ev.decide({"messages": n, "neg": 0}, False).score == want, n
    assert ev.decide({"messages": 800, "neg": 0}, False).pql is True
    assert ev.decide({"messages": 0, "neg": 3}, False).score == -10
    assert ev.decide({"messages": 0, "neg": 100}, False).score == -30  # negative cap
    assert ev.decide({"messages": None, "neg": 0}, False).score == 0
    assert ev.reasons({"messages": 250, "neg": 5}) == [
        {"rule": "5 points per 100 messages (max 40)", "points": 10, "signals": {"messages": 250}},
        {"rule": "-10 points per 2 neg (max -30)", "points": -20, "signals": {"neg": 5}},
    ]


def test_score_is_integral_when_points_are() -> None:
    h = Harness(SEG)
    for i in range(3):
        h.send(track("Message Sent", T0 + i))
    [q] = [t for t in h.transitions if t["kind"] == "qualified"]
    assert q["score"] == 30 and type(q["score"]) is int


# -- late events ---------------------------------------------------------------------------

LATE = """
name: late
version: 1
signals:
  short: {count: "A", window: 1d}
  long:  {count: "A", window: 30d}
qualify:
  when: "long >= 3"
segments:
  recent: "short >= 2"
"""


def _ev(obj: dict) -> Event:
    ev = event_from_obj(obj)
    assert isinstance(ev, Event)
    return ev


def test_late_event_applied_to_its_bucket_and_evaluated_at_account_clock() -> None:
    h = Harness(LATE)
    clock = T0 + 10 * DAY
    h.send(track("A", clock))
    out = h.send(track("A", clock - 2 * HOUR, mid="late-1"))
    assert h.outcomes[-1].late is True
    assert [brief(t) for t in out] == [
        ("segment_entered", "recent", "acme", iso(clock), 0, "event", "late-1")
    ]
    assert (h.value("short"), h.value("long")) == (2, 2)
    assert h.states["acme"].clock == clock
    # The late event's short bucket (T0+10d-2h) leaves at T0 + 10d - 1h + 1d, before the other.
    [x] = h.advance("acme", clock + DAY)
    assert brief(x) == (
        "segment_exited",
        "recent",
        "acme",
        iso(clock - HOUR + DAY),
        0,
        "time",
        None,
    )


def test_late_event_whose_bucket_already_expired_does_not_count_there() -> None:
    h = Harness(LATE)
    clock = T0 + 10 * DAY
    h.send(track("A", clock))
    h.send(track("A", clock - 1))
    # 5 days old: outside `short` (its bucket left at T0+5d+1h+1d) but inside `long`.
    out = h.send(track("A", T0 + 5 * DAY, mid="late-2"))
    assert h.outcomes[-1].late is True
    assert (h.value("short"), h.value("long")) == (2, 3)
    assert [brief(t) for t in out] == [
        ("qualified", None, "acme", iso(clock), 0, "event", "late-2")
    ]
    # An event that changes nothing (its only bucket expired, ... here: nothing read) emits nothing.
    h2 = Harness(
        LATE.replace('long:  {count: "A", window: 30d}', 'long:  {count: "B", window: 30d}')
    )
    h2.send(track("A", clock))
    assert h2.send(track("A", T0 + 5 * DAY)) == []
    assert h2.outcomes[-1].reject is None
    assert h2.value("short") == 1


def test_too_late_beyond_longest_window_is_rejected_and_state_unchanged() -> None:
    h = Harness(LATE)
    clock = T0 + 40 * DAY
    h.send(track("A", clock))
    encoded = h.scorer.codec.encode(h.states["acme"])
    out = h.scorer.apply("acme", h.states["acme"], _ev(track("A", clock - 30 * DAY)))
    assert out.reject is not None and out.reject.reason is RejectReason.TOO_LATE
    assert out.reject.field == "$.timestamp"
    assert out.transitions == [] and out.late is False
    assert h.scorer.codec.encode(h.states["acme"]) == encoded
    # One ms younger than that is still applied (to `long` only).
    out = h.scorer.apply("acme", h.states["acme"], _ev(track("A", clock - 30 * DAY + 1)))
    assert out.reject is None and out.late is True
    assert (h.value("short"), h.value("long")) == (1, 2)
