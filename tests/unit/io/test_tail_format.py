"""format_transition: the one line a human reads per transition; must never crash on odd input."""

from __future__ import annotations

from typing import Any

from streams.io.tail import TransitionRow, decode_transition, format_transition

BASE: dict[str, Any] = {
    "account_id": "acme",
    "kind": "qualified",
    "segment": None,
    "score": 120,
    "previous_score": 90,
    "occurred_at": "2026-01-05T10:00:00.000Z",
    "reasons": [
        {"rule": "messages >= 5", "points": 40, "signals": {"messages": 7}},
        {"rule": "seats >= 3", "points": 50, "signals": {"seats": 4}},
        {"rule": "inactive 14d", "points": -60, "signals": {}},
        {"rule": "integrations >= 1", "points": 20, "signals": {}},
        {"rule": "admin invited", "points": 5, "signals": {}},
    ],
}


def test_full_row() -> None:
    row = format_transition(BASE)
    assert row == TransitionRow(
        occurred_at="2026-01-05T10:00:00.000Z",
        account="acme",
        kind="qualified",
        score="90 -> 120",
        reasons="inactive 14d (-60); seats >= 3 (+50); messages >= 5 (+40); +2 more",
    )


def test_segment_kind_names_the_segment() -> None:
    row = format_transition({**BASE, "kind": "segment_exited", "segment": "buying_intent"})
    assert row.kind == "segment_exited buying_intent"


def test_float_scores_and_exactly_three_reasons() -> None:
    t = {**BASE, "score": 99.5, "previous_score": 100.0, "reasons": BASE["reasons"][:3]}
    row = format_transition(t)
    assert row.score == "100 -> 99.5"
    assert "more" not in row.reasons
    assert row.reasons.count(";") == 2


def test_large_and_fractional_numbers_stay_readable() -> None:
    row = format_transition({**BASE, "score": 1234567, "previous_score": 0.125})
    assert row.score == "0.12 -> 1234567"


def test_top_is_configurable() -> None:
    assert format_transition(BASE, top=1).reasons == "inactive 14d (-60); +4 more"


def test_missing_and_malformed_fields_do_not_raise() -> None:
    row = format_transition({"reasons": ["not a dict", {"points": "x"}], "score": True})
    assert row.cells() == ("?", "?", "?", "?", "", "? (?)")
    assert format_transition({}).reasons == "-"


def test_decode_transition() -> None:
    assert decode_transition(b'{"a": 1}') == {"a": 1}
    assert decode_transition(b"[1]") is None
    assert decode_transition(b"nope") is None
    assert decode_transition(None) is None


def test_a_model_change_says_which_version_decided_it() -> None:
    t = {**BASE, "trigger": "model_change", "message_id": None}
    t["model"] = {"name": "team-chat", "version": 4, "effective_from": t["occurred_at"]}
    assert format_transition(t).kind.endswith("(switch to v4)")
    assert "switch" not in format_transition(BASE).kind
    assert format_transition({**t, "model": "odd"}).kind.endswith("(switch to v?)")


def test_the_summary_is_the_why_when_there_is_one() -> None:
    """A segment entry reads as its own condition, not as the score's reasons."""
    text = "acme entered segment buying_intent: pricing_views >= 1 (1 × Pricing Viewed)."
    row = format_transition(
        {**BASE, "kind": "segment_entered", "segment": "buying_intent", "summary": text}
    )
    assert row.reasons == text


PLAYBOOK: dict[str, Any] = {
    "play": "qualified",
    "route": "sales_led",
    "urgency_hours": 4,
    "alert": True,
    "respond_by": "2026-01-05T14:00:00.000Z",
    "deal_size": 5000,
    "deal_band": "large",
    "owner": "ana@example.com",
    "owner_from": "pool",
    "contacts": [],
}


def test_the_action_column_shows_an_alerts_route_owner_and_deadline() -> None:
    row = format_transition({**BASE, "playbook": PLAYBOOK})
    assert row.action == "sales_led -> ana@example.com, by 2026-01-05 14:00"
    unowned = {**PLAYBOOK, "owner": None, "owner_from": None}
    assert format_transition({**BASE, "playbook": unowned}).action.startswith("sales_led, by")
    held = {**PLAYBOOK, "alert": False, "respond_by": None}
    held["cooldown_until"] = "2026-01-19T10:00:00.000Z"
    assert format_transition({**BASE, "playbook": held}).action == (
        "sales_led -> ana@example.com (cooldown until 2026-01-19 10:00)"
    )
    quiet = {**PLAYBOOK, "alert": False, "respond_by": None}
    assert format_transition({**BASE, "playbook": quiet}).action == ""
    assert format_transition(BASE).action == ""
    assert format_transition({**BASE, "playbook": "odd"}).action == ""
