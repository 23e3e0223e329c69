"""Every form of the model language loads into the spec dataclasses as documented."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from streams.model.durations import DAY_MS, HOUR_MS, MINUTE_MS
from streams.model.loader import load_model, parse_model
from streams.model.spec import Model, PerRule, SignalKind, WhenRule

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def team_chat() -> Model:
    return load_model(EXAMPLES / "team-chat.yaml")


def model(body: str) -> Model:
    return parse_model(textwrap.dedent(body))


def test_header(team_chat: Model) -> None:
    assert team_chat.name == "team-chat"
    assert team_chat.version == 3
    assert team_chat.description == ""
    assert team_chat.source_path == str(EXAMPLES / "team-chat.yaml")
    text = (EXAMPLES / "team-chat.yaml").read_text()
    assert team_chat.fingerprint == hashlib.sha256(text.encode()).hexdigest()
    assert [s.name for s in team_chat.signals] == [
        "messages", "big_meetings", "invites", "seats", "active_days", "storage_mb",
        "pricing_views", "onboarded", "employees", "industry", "vp_users",
    ]  # fmt: skip


def test_count_signal(team_chat: Model) -> None:
    s = team_chat.signal("messages")
    assert s.kind is SignalKind.COUNT
    assert s.events == frozenset({"Message Sent"})
    assert s.window_ms == 30 * DAY_MS
    assert s.bucket_ms == DAY_MS
    assert s.where is None and s.property is None and s.trait is None
    assert s.line == 6


def test_count_with_where(team_chat: Model) -> None:
    s = team_chat.signal("big_meetings")
    assert s.where is not None
    assert s.where.source == "participants >= 5"
    assert s.where.names == frozenset({"participants"})
    assert s.where.fn({"participants": 5}) is True
    assert s.where.fn({"participants": 4}) is False
    assert s.where.fn({}) is False


def test_distinct_users_and_active_days_any(team_chat: Model) -> None:
    seats = team_chat.signal("seats")
    assert seats.kind is SignalKind.DISTINCT_USERS
    assert seats.events is None
    assert (seats.window_ms, seats.bucket_ms) == (7 * DAY_MS, 6 * HOUR_MS)
    days = team_chat.signal("active_days")
    assert days.kind is SignalKind.ACTIVE_DAYS
    assert days.events is None
    assert (days.window_ms, days.bucket_ms) == (14 * DAY_MS, DAY_MS)


def test_sum_signal(team_chat: Model) -> None:
    s = team_chat.signal("storage_mb")
    assert s.kind is SignalKind.SUM
    assert s.property == "size_mb"
    assert s.events == frozenset({"File Uploaded"})
    assert s.window_ms == 90 * DAY_MS


def test_ever_trait_and_users_with_trait(team_chat: Model) -> None:
    ever = team_chat.signal("onboarded")
    assert ever.kind is SignalKind.EVER
    assert ever.events == frozenset({"Onboarding Completed"})
    assert (ever.window_ms, ever.bucket_ms) == (None, None)
    trait = team_chat.signal("employees")
    assert trait.kind is SignalKind.TRAIT
    assert trait.trait == "employees"
    assert (trait.window_ms, trait.bucket_ms, trait.events) == (None, None, None)
    vp = team_chat.signal("vp_users")
    assert vp.kind is SignalKind.USERS_WITH_TRAIT
    assert vp.trait == "title"
    assert vp.values == frozenset({"VP Sales", "Head of Marketing"})


def test_score_rules(team_chat: Model) -> None:
    rules = team_chat.score
    assert len(rules) == 4
    first = rules[0]
    assert isinstance(first, WhenRule)
    assert (first.label, first.points, first.line) == ("onboarded", 30.0, 18)
    assert first.when.fn({"onboarded": 1}) is True
    per = rules[3]
    assert isinstance(per, PerRule)
    assert (per.signal, per.every, per.points, per.max) == ("messages", 100.0, 5.0, 40.0)
    assert per.label == "5 points per 100 messages (max 40)"
    assert per.line == 21


def test_qualify_and_segments(team_chat: Model) -> None:
    q = team_chat.qualify
    assert q.when.fn({"score": 100, "employees": 10}) is True
    assert q.when.fn({"score": 100, "employees": None}) is False
    assert q.exit is not None and q.exit.fn({"score": 79}) is True
    assert [s.name for s in team_chat.segments] == [
        "free_limit_hit", "buying_intent", "purgatory", "icp_pql",
    ]  # fmt: skip
    icp = team_chat.segments[3]
    assert icp.expr.names == frozenset({"pql", "industry"})
    assert icp.expr.fn({"pql": True, "industry": "software"}) is True
    assert icp.line == 29
    assert team_chat.longest_window_ms == 90 * DAY_MS


BASE = """\
name: m
version: 1
signals:
  a: {count: "A", window: 30d}
qualify: {when: "a >= 1"}
"""


def test_minimal_model_defaults() -> None:
    m = parse_model(BASE, source="m.yaml")
    assert m.score == () and m.segments == ()
    assert m.qualify.exit is None
    assert m.source_path == "m.yaml"
    assert m.extra == {}


def test_lifetime_window_and_event_lists() -> None:
    m = model(
        """\
        name: m
        version: 0
        description: all the optional forms
        signals:
          total: {count: ["A", "B"]}
          spend: {sum: any, property: amount.usd, where: "plan.tier == 'pro'"}
          users: {distinct_users: any}
          days:  {active_days: "A"}
          ok:    {ever: "A", where: "ok == true"}
          titled: {users_with_trait: title}
        qualify: {when: "total >= 1", exit: null}
        """
    )
    assert m.description == "all the optional forms"
    total = m.signal("total")
    assert total.events == frozenset({"A", "B"})
    assert (total.window_ms, total.bucket_ms) == (None, None)
    assert m.signal("spend").property == "amount.usd"
    assert m.signal("spend").where is not None
    assert m.signal("users").window_ms is None
    assert (m.signal("days").window_ms, m.signal("days").bucket_ms) == (None, None)
    assert m.signal("titled").values is None  # any non-null value
    assert m.qualify.exit is None


def test_explicit_bucket_overrides_default() -> None:
    m = model(
        """\
        name: m
        version: 1
        signals:
          a: {count: "A", window: 30d, bucket: 1h}
          b: {count: "A", window: 1h}
          c: {count: "A", window: 15m, bucket: 15m}
        qualify: {when: "a >= 1"}
        """
    )
    assert m.signal("a").bucket_ms == HOUR_MS
    assert m.signal("b").bucket_ms == MINUTE_MS
    assert m.signal("c").bucket_ms == 15 * MINUTE_MS


def test_rule_names_labels_and_defaults() -> None:
    m = model(
        """\
        name: m
        version: 1
        signals:
          a: {count: "A", window: 30d}
        score:
          - {when: "a >= 1", points: -10, name: penalty}
          - {per: a, points: 1}
          - {per: a, every: 2.5, points: 0.5, name: graded}
          - {per: a, every: 10, points: 3, max: 30}
        qualify: {when: "score >= 1"}
        """
    )
    r0, r1, r2, r3 = m.score
    assert isinstance(r0, WhenRule) and (r0.label, r0.points) == ("penalty", -10.0)
    assert isinstance(r1, PerRule)
    assert (r1.every, r1.max, r1.label) == (1.0, None, "1 point per 1 a")
    assert isinstance(r2, PerRule) and (r2.label, r2.every, r2.points) == ("graded", 2.5, 0.5)
    assert isinstance(r3, PerRule) and r3.label == "3 points per 10 a (max 30)"


def test_segment_mapping_form_and_reading_segments_above() -> None:
    m = model(
        """\
        name: m
        version: 1
        signals:
          a: {count: "A", window: 30d}
        qualify: {when: "a >= 1"}
        segments:
          first: {when: "a >= 5", description: "five or more"}
          second: "first and not pql and score == 0"
        """
    )
    first, second = m.segments
    assert first.expr.source == "a >= 5"
    assert second.expr.names == frozenset({"first", "pql", "score"})


def test_extension_keys_go_to_extra() -> None:
    m = parse_model(BASE + "x-owner: {team: growth, slack: '#pql'}\n")
    assert m.extra == {"x-owner": {"team": "growth", "slack": "#pql"}}


def test_fingerprint_changes_with_text() -> None:
    assert parse_model(BASE).fingerprint != parse_model(BASE + "# comment\n").fingerprint
    assert parse_model(BASE).fingerprint == hashlib.sha256(BASE.encode()).hexdigest()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    m = load_model(path)
    assert m.name == path.stem
    assert m.signals
    assert m.qualify.when.names


def test_example_set_is_complete() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {
        "team-chat.yaml", "slack.yaml", "notion.yaml", "zoom.yaml", "weighted.yaml",
        "icp-segments.yaml",
    } <= names  # fmt: skip


def test_examples_express_their_thresholds() -> None:
    slack = load_model(EXAMPLES / "slack.yaml")
    assert slack.qualify.when.fn({"messages": 2000}) is True
    assert slack.qualify.when.fn({"messages": 1999}) is False
    notion = load_model(EXAMPLES / "notion.yaml")
    assert notion.signal("collaborators").kind is SignalKind.DISTINCT_USERS
    assert notion.signal("collaborators").events == frozenset({"Page Edited"})
    assert notion.qualify.when.fn({"pages": 3, "collaborators": 2}) is True
    assert notion.qualify.when.fn({"pages": 3, "collaborators": 1}) is False
    zoom = load_model(EXAMPLES / "zoom.yaml")
    big = zoom.signal("big_meetings")
    assert big.where is not None and big.where.fn({"participants": 5}) is True
    assert zoom.qualify.when.fn({"big_meetings": 3}) is True
    weighted = load_model(EXAMPLES / "weighted.yaml")
    points = [r.points for r in weighted.score]
    assert points == [30.0, 40.0, 50.0]
    assert weighted.qualify.when.fn({"score": 100}) is True
    icp = load_model(EXAMPLES / "icp-segments.yaml")
    assert {"free_limit_hit", "buying_intent"} <= {s.name for s in icp.segments}
    assert {"employees", "industry", "country"} <= {s.name for s in icp.signals}
