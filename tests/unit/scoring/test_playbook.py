"""Playbooks (issue 15 item 1): the `playbook:` section's language and what every transition
carries (route, urgency, respond_by, owner, contacts, cooldown)."""

from __future__ import annotations

import textwrap
from collections import Counter

import pytest

from streams.model.diff import change_kind, definition_changes
from streams.model.loader import check_model
from streams.model.playbook import DEFAULT_ROUTES
from streams.model.spec import Complexity, Route
from streams.scoring.playbook import pool_member
from streams.state.account import StateCodec
from tests.unit.scoring.util import DAY, HOUR, T0, Harness, group, identify, iso, model, track

BASE = """\
name: pb
version: 1
signals:
  messages:  {count: "Message Sent", window: 30d}
  seats:     {distinct_users: any, window: 7d}
  opened:    {ever: "Opened"}
  employees: {trait: employees}
  region:    {trait: region}
  owner:     {trait: owner}
  deciders:  {users_with_trait: title, in: ["VP Sales", "Head of Marketing"]}
score:
  - {when: "messages >= 3", points: 100}
qualify:
  when: "score >= 100"
segments:
  purgatory: "opened and not pql"
  busy: "messages >= 5"
"""
PLAYBOOK = """\
playbook:
  complexity: intermediate
  deal_size:
    value: "employees * 10"
    bands: {small: 0, medium: 1000, large: 10000}
  routes:
    large: {route: sales_led, respond_within: 2h}
  segments:
    purgatory: {route: customer_success, respond_within: 48h}
  owner:
    trait: owner
    rules:
      - {when: "region == 'EMEA'", owner: emea@acme.com}
    pool: [ana@acme.com, ben@acme.com, chloe@acme.com]
  contacts: {titles: deciders, active: seats, max: 3}
  cooldown: 14d
"""
MODEL = BASE + PLAYBOOK


def issues(text: str) -> list[tuple[int, str, str]]:
    return [(i.line, i.field, i.message) for i in check_model(textwrap.dedent(text))]


# --- the language ---------------------------------------------------------------------------


def test_a_playbook_parses_with_the_matrix_filled_in() -> None:
    pb = model(MODEL).playbook
    assert pb is not None
    assert pb.complexity is Complexity.INTERMEDIATE
    assert pb.bands == (("small", 0), ("medium", 1000), ("large", 10000))
    # small and medium from the built-in matrix's row, large overridden.
    assert pb.routes == {
        "small": DEFAULT_ROUTES[Complexity.INTERMEDIATE]["small"],
        "medium": DEFAULT_ROUTES[Complexity.INTERMEDIATE]["medium"],
        "large": Route("sales_led", 2 * HOUR),
    }
    assert pb.segments == {"purgatory": Route("customer_success", 48 * HOUR)}
    assert pb.owner_pool == ("ana@acme.com", "ben@acme.com", "chloe@acme.com")
    assert (pb.titles, pb.active, pb.max_contacts, pb.cooldown_ms) == (
        "deciders",
        "seats",
        3,
        14 * DAY,
    )
    assert model(BASE).playbook is None


def test_the_matrix_sends_bigger_deals_and_more_complex_products_sooner() -> None:
    for row in DEFAULT_ROUTES.values():
        hours = [row[band].respond_within_ms for band in ("small", "medium", "large")]
        assert hours == sorted(hours, reverse=True)
    for band in ("small", "medium", "large"):
        hours = [DEFAULT_ROUTES[c][band].respond_within_ms for c in Complexity]
        assert hours == sorted(hours, reverse=True)


# The playbook starts on line 18 of MODEL: each case replaces one piece of it.
@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "complexity: intermediate",
            "complexity: complx",
            (
                19,
                "playbook.complexity",
                "complexity must be one of simple, intermediate, "
                "complex, got 'complx' (did you mean 'complex'?)",
            ),
        ),
        (
            "  complexity: intermediate\n",
            "",
            (19, "playbook.complexity", "'complexity' is required"),
        ),
        (
            'value: "employees * 10"',
            'value: "employes * 10"',
            (
                21,
                "playbook.deal_size.value",
                "unknown signal 'employes' (did you mean 'employees'?)",
            ),
        ),
        (
            'value: "employees * 10"',
            'value: "busy"',
            (
                21,
                "playbook.deal_size.value",
                "'busy' is a segment; the playbook cannot read segments (only later segments can)",
            ),
        ),
        (
            "large: 10000}",
            "large: 500}",
            (
                22,
                "playbook.deal_size.bands.large",
                "bands must be in ascending order: 'large' "
                "starts at 500, not above 'medium' (1000)",
            ),
        ),
        (
            "medium: 1000,",
            "mid: 1000,",
            (
                22,
                "playbook.deal_size.bands.mid",
                "band 'mid' has no route: the built-in matrix knows small, "
                "medium and large; add `routes: {mid: {route: ..., respond_within: ...}}`",
            ),
        ),
        (
            "large: {route: sales_led",
            "huge: {route: sales_led",
            (24, "playbook.routes.huge", "'huge' is not a deal-size band (small, medium, large)"),
        ),
        (
            "respond_within: 2h}",
            "respond_within: soon}",
            (
                24,
                "playbook.routes.large.respond_within",
                "invalid duration 'soon': expected a whole number and a unit, like '45s', '15m', "
                "'12h', '30d' or '2w'",
            ),
        ),
        (
            "purgatory: {route: customer_success",
            "purgatry: {route: customer_success",
            (
                26,
                "playbook.segments.purgatry",
                "unknown segment 'purgatry' (did you mean 'purgatory'?)",
            ),
        ),
        (
            "trait: owner\n",
            "trait: region2\n",
            (28, "playbook.owner.trait", "unknown signal 'region2' (did you mean 'region'?)"),
        ),
        (
            "trait: owner\n",
            "trait: messages\n",
            (
                28,
                "playbook.owner.trait",
                "'messages' is a count signal; the owner comes from a "
                "trait signal (like {trait: owner_email})",
            ),
        ),
        (
            "owner: emea@acme.com}",
            "ownr: emea@acme.com}",
            (30, "playbook.owner.rules[0].ownr", "unknown key 'ownr' (did you mean 'owner'?)"),
        ),
        (
            "titles: deciders",
            "titles: seats",
            (
                32,
                "playbook.contacts.titles",
                "'seats' is a distinct_users signal; contacts by "
                "title come from a users_with_trait signal (like {users_with_trait: title, in: "
                '["VP Sales"]})',
            ),
        ),
        (
            "max: 3}",
            "max: 50}",
            (32, "playbook.contacts.max", "max must be a whole number from 1 to 20, got 50"),
        ),
        (
            "cooldown: 14d",
            "cooldwn: 14d",
            (33, "playbook.cooldwn", "unknown key 'cooldwn' (did you mean 'cooldown'?)"),
        ),
    ],
)
def test_playbook_errors_name_the_line_and_field(
    old: str, new: str, expected: tuple[int, str, str]
) -> None:
    assert old in MODEL
    found = issues(MODEL.replace(old, new, 1))
    assert expected in found, found


def test_contacts_by_activity_need_a_window() -> None:
    text = MODEL.replace(
        "seats:     {distinct_users: any, window: 7d}", "seats: {distinct_users: any}"
    )
    (line, field, message), *rest = issues(text)
    assert (line, field) == (32, "playbook.contacts.active") and not rest
    assert "has no window" in message


def test_a_playbook_change_is_a_decision_change() -> None:
    old = model(MODEL)
    new = model(MODEL.replace("version: 1", "version: 2").replace("cooldown: 14d", "cooldown: 7d"))
    assert definition_changes(old, new) == [
        "version: 1 -> 2",
        "playbook changed (route, owner, contacts or cooldown)",
    ]
    assert change_kind(old, new).startswith("rules only")
    assert "playbook added" in definition_changes(model(BASE), old)


# --- what transitions carry -----------------------------------------------------------------


def _account(h: Harness, account: str, traits: dict[str, object], t: int = T0) -> None:
    h.send(group("u1", account, t, traits))


def _qualify(h: Harness, account: str, t: int, user: str = "u1") -> list[dict]:
    out: list[dict] = []
    for i in range(3):
        out += h.send(track("Message Sent", t + i, user=user, account=account))
    return out


def _qualified(ts: list[dict]) -> dict:
    (q,) = [t for t in ts if t["kind"] == "qualified"]
    return q


def test_a_qualification_carries_route_urgency_owner_and_contacts() -> None:
    h = Harness(MODEL)
    _account(h, "acme", {"employees": 5000, "owner": "dana@acme.com", "region": "EMEA"})
    h.send(identify("vp", T0 + 1, {"title": "VP Sales"}))
    h.send(group("vp", "acme", T0 + 2, {}))
    h.send(track("Opened", T0 + HOUR, user="u2", account="acme"))
    h.send(track("Opened", T0 + 2 * HOUR, user="u3", account="acme"))
    q = _qualified(_qualify(h, "acme", T0 + 3 * DAY, user="u2"))
    at = T0 + 3 * DAY + 2
    assert q["occurred_at"] == iso(at)
    assert q["playbook"] == {
        "play": "qualified",
        "route": "sales_led",
        "urgency_hours": 2,
        "alert": True,
        "respond_by": iso(at + 2 * HOUR),
        "deal_size": 50000,
        "deal_band": "large",
        "owner": "dana@acme.com",
        "owner_from": "trait",
        "contacts": [
            {"user_id": "vp", "why": "deciders"},
            # u2 was active on day 3 (the last bucket), u3 on day 0.
            {"user_id": "u2", "why": "seats", "last_active": iso(T0 + 3 * DAY)},
            {"user_id": "u3", "why": "seats", "last_active": iso(T0)},
        ],
    }


@pytest.mark.parametrize(
    "traits, band, route, hours, owner, owner_from",
    [
        ({"employees": 10, "region": "EMEA"}, "small", "self_serve", 48, "emea@acme.com", "rule"),
        ({"employees": 150, "owner": " "}, "medium", "sales_assist", 24, None, "pool"),
        ({}, "small", "self_serve", 48, None, "pool"),  # no deal size: the lowest band
    ],
)
def test_band_route_and_owner_fall_back_in_order(
    traits: dict[str, object], band: str, route: str, hours: int, owner: str | None, owner_from: str
) -> None:
    h = Harness(MODEL)
    _account(h, "globex", traits)
    pb = _qualified(_qualify(h, "globex", T0 + DAY))["playbook"]
    assert (pb["deal_band"], pb["route"], pb["urgency_hours"]) == (band, route, hours)
    assert pb["owner_from"] == owner_from
    assert pb["owner"] == (
        owner or pool_member(("ana@acme.com", "ben@acme.com", "chloe@acme.com"), "globex")
    )


def test_the_pool_is_deterministic_and_spread() -> None:
    pool = ("a", "b", "c")
    owners = Counter(pool_member(pool, f"acct-{i}") for i in range(3000))
    assert set(owners) == set(pool) and min(owners.values()) > 900
    assert [pool_member(pool, "acme") for _ in range(3)] == [pool_member(pool, "acme")] * 3


def test_a_routed_segment_entry_alerts_with_its_own_route() -> None:
    h = Harness(MODEL)
    _account(h, "acme", {"employees": 50})
    (entered,) = h.send(track("Opened", T0 + HOUR, account="acme"))
    assert (entered["kind"], entered["segment"]) == ("segment_entered", "purgatory")
    pb = entered["playbook"]
    assert (pb["play"], pb["route"], pb["urgency_hours"], pb["alert"]) == (
        "purgatory",
        "customer_success",
        48,
        True,
    )
    assert pb["respond_by"] == iso(T0 + HOUR + 48 * HOUR)
    # Qualifying leaves purgatory: that exit is no alert; the qualification is one.
    ts = _qualify(h, "acme", T0 + 2 * HOUR)
    exited = next(t for t in ts if t["kind"] == "segment_exited")
    assert exited["playbook"]["play"] == "purgatory" and exited["playbook"]["alert"] is False
    assert exited["playbook"]["respond_by"] is None
    assert _qualified(ts)["playbook"]["alert"] is True
    # An unrouted segment's entry carries the standing route, for information.
    busy = [t for t in h.send(track("Message Sent", T0 + 3 * HOUR, account="acme"))]
    busy += h.send(track("Message Sent", T0 + 3 * HOUR + 1, account="acme"))
    (b,) = [t for t in busy if t["segment"] == "busy"]
    assert (b["playbook"]["play"], b["playbook"]["alert"]) == ("qualified", False)


def test_an_account_that_flaps_is_not_alerted_again_within_the_cooldown() -> None:
    h = Harness(MODEL.replace("cooldown: 14d", "cooldown: 60d"))
    _account(h, "acme", {"employees": 50})
    first = _qualified(_qualify(h, "acme", T0 + DAY))
    assert first["playbook"]["alert"] is True
    # The 30d window empties: disqualified (no alert).
    (gone,) = [t for t in h.advance("acme", T0 + 32 * DAY) if t["kind"] == "disqualified"]
    assert gone["playbook"]["alert"] is False and gone["playbook"]["respond_by"] is None
    # A restart in between: the last alert is part of the kept state.
    codec = StateCodec(h.scorer.model_tag)
    h.states["acme"] = codec.decode(codec.encode(h.states["acme"]))  # type: ignore[assignment]
    # Back in two days later: within the cooldown, so no alert, and it says until when.
    again = _qualified(_qualify(h, "acme", T0 + 33 * DAY))
    assert again["playbook"]["alert"] is False
    assert again["playbook"]["cooldown_until"] == iso(T0 + DAY + 2 + 60 * DAY)
    assert again["playbook"]["respond_by"] is None
    # Out again, and back after the cooldown: a new alert, which starts a new cooldown.
    h.advance("acme", T0 + 64 * DAY)
    late = _qualified(_qualify(h, "acme", T0 + 65 * DAY))
    assert late["playbook"]["alert"] is True and "cooldown_until" not in late["playbook"]
    assert h.states["acme"].alerted == {"qualified": T0 + 65 * DAY + 2}


def test_without_a_cooldown_every_qualification_alerts() -> None:
    h = Harness(MODEL.replace("  cooldown: 14d\n", ""))
    _account(h, "acme", {"employees": 50})
    _qualify(h, "acme", T0 + DAY)
    h.advance("acme", T0 + 32 * DAY)
    assert _qualified(_qualify(h, "acme", T0 + 33 * DAY))["playbook"]["alert"] is True
    assert h.states["acme"].alerted == {}


def test_a_model_without_a_playbook_writes_none() -> None:
    h = Harness(BASE)
    _account(h, "acme", {"employees": 50})
    assert "playbook" not in _qualified(_qualify(h, "acme", T0 + DAY))
