"""Model switches over kept state (`streams.scoring.switch`), through the backtest: what is
decided at the switch, what is stamped on every transition, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.backtest.runner import Backtest
from streams.cli import main
from streams.events.parse import event_from_obj
from streams.io.simulate import generate
from streams.scoring.switch import IncompatibleModel, ModelSwitch, check_switch, signal_changes
from tests.unit.scoring.util import DAY, FIXED_NOW, HOUR, T0, iso, model, track, validate

V1 = """\
name: chat
version: 1
signals:
  msgs: {count: "Message Sent", window: 7d}
  seats: {distinct_users: any, window: 7d}
score:
  - {when: "msgs >= 3", points: 50}
  - {per: seats, every: 1, points: 20, max: 60}
qualify:
  when: "score >= 100"
  exit: "score < 60"
segments:
  busy: "msgs >= 5"
"""
# Same signals, other rules: a lower bar, another segment.
V2 = (
    V1.replace("version: 1", "version: 2")
    .replace('when: "score >= 100"', 'when: "score >= 70"')
    .replace('busy: "msgs >= 5"', 'busy: "msgs >= 4"\n  team: "seats >= 2"')
)
EPOCH = "1970-01-01T00:00:00.000Z"


def _run(
    events: list[dict[str, Any]], first: str, *switches: tuple[int, str], until: int | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    bt = Backtest(
        model(first),
        sink=out.append,
        now_ms=lambda: FIXED_NOW,
        received_by_ms=None,
        switches=[ModelSwitch(at, model(text)) for at, text in switches],
    )
    for i, obj in enumerate(events):
        bt.feed_line(json.dumps(obj).encode(), i + 1)
    bt.finish(until)
    for t in out:
        validate(t)
    return out


def _history() -> list[dict[str, Any]]:
    """a: 3 messages by 2 users on day 0 (90 points: PQL under v2 only), 2 more on day 2;
    b: 1 message; c: 3 messages by 3 users (110: PQL under both)."""
    ev = [
        track("Message Sent", T0 + 1 * HOUR, user="a1", account="a", mid="m1"),
        track("Message Sent", T0 + 2 * HOUR, user="a2", account="a", mid="m2"),
        track("Message Sent", T0 + 3 * HOUR, user="a1", account="a", mid="m3"),
        track("Message Sent", T0 + 4 * HOUR, user="b1", account="b", mid="m4"),
        track("Message Sent", T0 + 5 * HOUR, user="c1", account="c", mid="m5"),
        track("Message Sent", T0 + 6 * HOUR, user="c2", account="c", mid="m6"),
        track("Message Sent", T0 + 7 * HOUR, user="c3", account="c", mid="m7"),
        track("Message Sent", T0 + 2 * DAY, user="a1", account="a", mid="m8"),
        track("Message Sent", T0 + 2 * DAY + HOUR, user="a1", account="a", mid="m9"),
    ]
    return ev


SWITCH = T0 + 1 * DAY


def test_a_switch_decides_every_account_again_at_its_instant() -> None:
    got = _run(_history(), V1, (SWITCH, V2))
    before = [t for t in got if t["occurred_at"] < iso(SWITCH)]
    at = [t for t in got if t["trigger"] == "model_change"]
    after = [t for t in got if t["occurred_at"] > iso(SWITCH)]
    assert {t["model"]["version"] for t in before} == {1}
    assert {t["model"]["effective_from"] for t in before} == {EPOCH}
    # At the switch: a qualifies under v2's lower bar (90 points), c joins the new segment; b
    # (20 points, one user) stays out. c was already a PQL under v1: no transition for that.
    assert sorted((t["account_id"], t["kind"], t["segment"]) for t in at) == [
        ("a", "qualified", None),
        ("a", "segment_entered", "team"),
        ("c", "segment_entered", "team"),
    ]
    for t in at:
        assert t["occurred_at"] == iso(SWITCH)
        assert t["model"] == {"name": "chat", "version": 2, "effective_from": iso(SWITCH)}
        assert t["message_id"] is None
    a_q = next(t for t in at if t["account_id"] == "a" and t["kind"] == "qualified")
    assert a_q["score"] == 90 and a_q["previous_score"] == 90  # same points, another bar
    assert a_q["condition"]["expr"] == "qualify.when: score >= 70"
    # After it, v2 decides: a's 4th message puts it in v2's `busy` (>= 4), not v1's (>= 5).
    assert [(t["account_id"], t["kind"], t["segment"]) for t in after][:1] == [
        ("a", "segment_entered", "busy")
    ]
    assert {t["model"]["version"] for t in after} == {2}
    assert {t["model"]["effective_from"] for t in after} == {iso(SWITCH)}


def test_model_change_ids_are_their_own_and_stable() -> None:
    first = _run(_history(), V1, (SWITCH, V2))
    again = _run(_history(), V1, (SWITCH, V2))
    assert [t["transition_id"] for t in first] == [t["transition_id"] for t in again]
    ids = [t["transition_id"] for t in first]
    assert len(ids) == len(set(ids))


def test_a_switch_to_the_same_rules_changes_nothing_but_the_stamp() -> None:
    same = V1.replace("version: 1", "version: 2")
    plain = _run(_history(), V1)
    switched = _run(_history(), V1, (SWITCH, same))
    assert not [t for t in switched if t["trigger"] == "model_change"]

    def shape(t: dict[str, Any]) -> tuple[Any, ...]:
        return (t["account_id"], t["kind"], t["segment"], t["occurred_at"], t["score"])

    assert [shape(t) for t in switched] == [shape(t) for t in plain]
    for t in switched:
        version = 2 if t["occurred_at"] >= iso(SWITCH) else 1
        assert t["model"]["version"] == version


def test_a_switch_before_the_history_is_the_new_model_from_the_start() -> None:
    early = T0 - DAY
    switched = _run(_history(), V1, (early, V2))
    plain = _run(_history(), V2)
    assert [t["transition_id"] for t in switched] == [t["transition_id"] for t in plain]
    assert {t["model"]["effective_from"] for t in switched} == {iso(early)}


def test_window_expiries_up_to_the_switch_fire_under_the_old_model() -> None:
    """c (messages at 5h, 6h, 7h; 6-hour buckets) qualifies under v1 at 7h (110 points); its
    first bucket leaves the 7-day window at 7d+6h. A switch at exactly that instant: the
    drop-out there is v1's (time), then v2 decides at it, and later expiries are v2's."""
    events = _history()[4:7]  # c only
    at = T0 + 7 * DAY + 6 * HOUR
    got = _run(events, V1, (at, V2), until=at + DAY)
    assert [
        (t["kind"], t["segment"], t["trigger"], t["model"]["version"], t["occurred_at"])
        for t in got
    ] == [
        ("qualified", None, "event", 1, iso(T0 + 7 * HOUR)),
        ("disqualified", None, "time", 1, iso(at)),  # 2 messages, 2 seats: 40 < 60
        ("segment_entered", "team", "model_change", 2, iso(at)),  # 2 seats
        ("segment_exited", "team", "time", 2, iso(T0 + 7 * DAY + 12 * HOUR)),
    ]


def test_several_switches_apply_in_time_order() -> None:
    v3 = V2.replace("version: 2", "version: 3").replace('team: "seats >= 2"', 'team: "seats >= 3"')
    got = _run(_history(), V1, (SWITCH + DAY, v3), (SWITCH, V2))
    changes = [
        (t["model"]["version"], t["account_id"], t["kind"], t["segment"])
        for t in got
        if t["trigger"] == "model_change"
    ]
    # v3 wants 3 seats for `team`: a (2 users) leaves it, c (3) stays.
    assert (3, "a", "segment_exited", "team") in changes
    assert (2, "a", "segment_entered", "team") in changes
    assert not [c for c in changes if c[0] == 3 and c[1] == "c"]


def test_late_events_before_the_switch_are_applied_under_the_new_model() -> None:
    events = _history()
    late = track("Message Sent", SWITCH - HOUR, user="b2", account="b")
    got = _run([*events, late], V1, (SWITCH, V2))
    b = [t for t in got if t["account_id"] == "b"]
    assert [(t["kind"], t["model"]["version"]) for t in b] == [("segment_entered", 2)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("window: 7d}\n  seats", "window: 3d}\n  seats"), "signal 'msgs'"),
        (lambda t: t.replace("  seats:", "  files: {count: Uploaded}\n  seats:"), "new signal"),
        (lambda t: t.replace('"score >= 100"', '"score >= 90"'), "its version did not"),
        (lambda t: t.replace("name: chat", "name: talk"), "name changed"),
    ],
)
def test_what_cannot_take_over_kept_state_is_refused(edit: Any, message: str) -> None:
    text = edit(V1)
    if "version did not" not in message:
        text = text.replace("version: 1", "version: 2")
    with pytest.raises(IncompatibleModel, match=message):
        check_switch(model(V1), model(text))
    if "signal" in message:  # over kept state; with a backfill it can (tests/unit/backtest)
        Backtest(model(V1), switches=[ModelSwitch(SWITCH, model(text))])
        return
    with pytest.raises(IncompatibleModel):
        Backtest(model(V1), switches=[ModelSwitch(SWITCH, model(text))])


def test_signal_changes_name_each_difference() -> None:
    other = (
        V1.replace("version: 1", "version: 2")
        .replace("window: 7d}\n  seats", 'window: 7d, where: "n > 1"}\n  seats')
        .replace("  seats: {distinct_users: any, window: 7d}\n", "")
        .replace("score:", "  files: {count: Uploaded}\nscore:")
        .replace("  - {per: seats, every: 1, points: 20, max: 60}\n", "")
    )
    changes = signal_changes(model(V1), model(other))
    assert changes == [
        "new signal 'files'",
        "signal 'msgs' changed: count; events Message Sent; window 604800000 ms, bucket "
        "21600000 ms -> count; events Message Sent; where n > 1; window 604800000 ms, bucket "
        "21600000 ms",
        "signal 'seats' removed",
    ]
    assert signal_changes(model(V1), model(V2)) == []


def test_simulated_history_switch_before_any_event_equals_the_new_model(tmp_path: Path) -> None:
    events = list(generate(accounts=30, days=10, seed=5))
    parsed = [event_from_obj(e) for e in events]
    assert all(not hasattr(p, "reason") for p in parsed)
    first = min(e["timestamp"] for e in events)
    from streams.events.timestamps import iso_to_epoch_ms

    start = iso_to_epoch_ms(first)
    assert start is not None
    switched = _run(events, V1, (start, V2))
    plain = _run(events, V2)
    assert switched and [t["transition_id"] for t in switched] == [
        t["transition_id"] for t in plain
    ]


def test_cli_switch_model(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _history()))
    v1 = tmp_path / "v1.yaml"
    v1.write_text(V1)
    v2 = tmp_path / "v2.yaml"
    v2.write_text(V2)
    out = tmp_path / "out.jsonl"
    report = tmp_path / "report.json"
    args = ["backtest", "--model", str(v1), "--received-by", "never", "--quiet"]
    res = CliRunner().invoke(
        main,
        [
            *args,
            "--switch-model",
            f"{iso(SWITCH)}={v2}",
            "--out",
            str(out),
            "--report",
            str(report),
            str(events),
        ],
    )
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["transition_id"] for t in got] == [
        t["transition_id"] for t in _run(_history(), V1, (SWITCH, V2))
    ]
    summary = json.loads(report.read_text())
    assert summary["switches"] == [{"at": iso(SWITCH), "model": "chat", "version": 2}]
    assert "switch" in res.output and "v2" in res.output

    bad = tmp_path / "bad.yaml"
    # A signal change is backfilled (tests/unit/backtest/test_backfill.py), but not routing.
    bad.write_text(
        V1.replace("version: 1", "version: 2").replace(
            "  seats:", "  admins: {users_with_trait: role, in: [admin]}\n  seats:"
        )
    )
    res = CliRunner().invoke(main, [*args, "--switch-model", f"{iso(SWITCH)}={bad}", str(events)])
    assert res.exit_code != 0
    assert "reads other user traits" in res.output and "new app id" in res.output
    res = CliRunner().invoke(main, [*args, "--switch-model", f"yesterday={v2}", str(events)])
    assert res.exit_code != 0 and "TIME=FILE" in res.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nversion: 2\nsignals: {}\n")
    res = CliRunner().invoke(
        main, [*args, "--switch-model", f"{iso(SWITCH)}={broken}", str(events)]
    )
    assert res.exit_code != 0 and f"{broken}:" in res.output
