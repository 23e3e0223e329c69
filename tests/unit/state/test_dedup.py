"""messageId de-duplication in the account state (`streams.state.dedup`) and through the
scorer: a re-delivered event counts once; memory stays within the horizon and the cap."""

from __future__ import annotations

from streams.events.types import Event, EventType
from streams.model.loader import parse_model
from streams.scoring.engine import Scorer
from streams.state import dedup
from streams.state.account import AccountState

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

MODEL = parse_model(
    """
name: dedup
version: 1
signals:
  msgs: {count: "Message Sent", window: 30d}
  seen: {ever: "Logged In"}
qualify:
  when: "msgs >= 3"
"""
)


def msg(mid: str, ts: int, name: str = "Message Sent") -> Event:
    return Event(EventType.TRACK, mid, ts, "u1", "acme", name, {}, {})


def fresh() -> AccountState:
    return AccountState(model="t", signals=[])


def test_digest_is_stable_and_eight_bytes() -> None:
    assert dedup.digest("m-1") == dedup.digest("m-1") != dedup.digest("m-2")
    assert len(dedup.digest("m-1")) == 8


def test_remembered_ids_are_found_and_others_not() -> None:
    state = fresh()
    for i in range(100):
        state.clock = T0 + i
        dedup.remember(state, dedup.digest(f"m{i}"), T0 + i)
    assert all(dedup.seen(state, dedup.digest(f"m{i}")) for i in range(100))
    assert not any(dedup.seen(state, dedup.digest(f"x{i}")) for i in range(100))


def test_only_aligned_matches_count() -> None:
    state = fresh()
    state.dedup_ids = b"\x00" * 3 + b"ABCDEFGH" + b"\x00" * 5  # "ABCDEFGH" straddles two ids
    assert not dedup.seen(state, b"ABCDEFGH")


def test_ids_older_than_the_horizon_are_forgotten() -> None:
    state = fresh()
    for h in range(60):  # one event an hour for 60 hours
        state.clock = T0 + h * HOUR
        dedup.remember(state, dedup.digest(f"m{h}"), state.clock)
    kept = len(state.dedup_ids) // 8
    assert 24 <= kept <= 26, kept
    assert sum(n for _, n in state.dedup_runs) == kept
    assert not dedup.seen(state, dedup.digest("m0"))
    assert dedup.seen(state, dedup.digest("m59"))


def test_the_cap_forgets_the_oldest_first() -> None:
    state = fresh()
    state.clock = T0
    for i in range(dedup.MAX_IDS + 10):
        dedup.remember(state, dedup.digest(f"m{i}"), T0)
    assert len(state.dedup_ids) == dedup.MAX_IDS * 8
    assert state.dedup_runs == [[T0 // HOUR, dedup.MAX_IDS]]
    assert not dedup.seen(state, dedup.digest("m9"))
    assert dedup.seen(state, dedup.digest("m10"))


def test_the_scorer_applies_a_redelivered_event_once() -> None:
    scorer = Scorer(MODEL, now_ms=lambda: 0.0)
    state = None
    outcomes = []
    for mid, ts in [
        ("a", T0),
        ("b", T0 + 1),
        ("a", T0),
        ("b", T0 + 1),
        ("c", T0 + 2),
        ("c", T0 + 2),
    ]:
        out = scorer.apply("acme", state, msg(mid, ts))
        state = out.state
        outcomes.append(out.duplicate)
    assert outcomes == [False, False, True, True, False, True]
    assert state is not None and state.signals[0].total == 3 and state.pql
    # Also late (older than the account's clock): still a duplicate, not a late event.
    late = scorer.apply("acme", state, msg("a", T0))
    assert late.duplicate and not late.late


def test_survives_encoding_and_old_states_decode() -> None:
    scorer = Scorer(MODEL, now_ms=lambda: 0.0)
    state = scorer.apply("acme", None, msg("a", T0)).state
    state = scorer.codec.decode(scorer.codec.encode(state))
    assert state is not None and scorer.apply("acme", state, msg("a", T0)).duplicate
    # A state written before the dedup fields (and the version after them) existed still
    # decodes.
    import msgspec

    from streams.state.account import AccountState

    fields = msgspec.msgpack.decode(scorer.codec.encode(state))
    assert fields[AccountState.__struct_fields__.index("version")] == MODEL.version
    old = msgspec.msgpack.encode(fields[: AccountState.__struct_fields__.index("dedup_ids")])
    decoded = scorer.codec.decode(old)
    assert decoded is not None and decoded.dedup_ids == b"" and decoded.dedup_runs == []
    assert decoded.version == 0  # before versions: the first model of the app's history


def test_an_event_that_changes_nothing_is_not_remembered() -> None:
    scorer = Scorer(MODEL, now_ms=lambda: 0.0)
    state = scorer.apply("acme", None, msg("a", T0, "Logged In")).state
    state = scorer.apply("acme", state, msg("b", T0 + 1, "Logged In")).state  # ever: no change
    state = scorer.apply("acme", state, msg("c", T0 + 2, "Page Viewed")).state  # not read
    assert len(state.dedup_ids) == 8
