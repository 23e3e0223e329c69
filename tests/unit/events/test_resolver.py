"""Account resolution: group membership, context.groupId, traits riding along, rejects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events.resolver import AccountResolver, UserRecord, route, user_trait_keys
from streams.events.types import Event, EventType, Reject, RejectReason
from streams.model.spec import Expr, Model, Qualify, Signal, SignalKind

from .strategies import json_objects

KEYS = frozenset({"title", "role"})


def track(user: str = "u1", account: str | None = None, name: str = "Message Sent") -> Event:
    return Event(EventType.TRACK, f"t-{user}-{name}", 1, user, account, name, {})


def identify(user: str = "u1", account: str | None = None, **traits: Any) -> Event:
    return Event(EventType.IDENTIFY, f"i-{user}", 1, user, account, None, {}, traits)


def group(user: str = "u1", account: str = "acme", **traits: Any) -> Event:
    return Event(EventType.GROUP, f"g-{user}-{account}", 1, user, account, None, {}, traits)


def test_group_then_track() -> None:
    r = AccountResolver(KEYS)
    assert r.resolve(group("u1", "acme")) == "acme"
    assert r.resolve(track("u1")) == "acme"
    assert r.users["u1"] == UserRecord("acme", {})


def test_track_with_context_group_id_needs_no_membership() -> None:
    r = AccountResolver(KEYS)
    assert r.resolve(track("u1", account="beta")) == "beta"
    assert len(r) == 0  # nothing worth remembering
    # context.groupId wins over membership, and does not change it.
    r.resolve(group("u1", "acme"))
    assert r.resolve(track("u1", account="beta")) == "beta"
    assert r.resolve(track("u1")) == "acme"


def test_track_without_any_account_is_rejected() -> None:
    r = AccountResolver(KEYS)
    result = r.resolve(track("u1"))
    assert isinstance(result, Reject)
    assert result.reason is RejectReason.MISSING_ACCOUNT
    assert result.field == "$.context.groupId"
    assert "user u1 has not joined a group (no earlier group call)" in result.detail
    assert "no context.groupId" in result.detail


def test_identify_before_group_traits_ride_along() -> None:
    r = AccountResolver(KEYS)
    ident = identify("u1", title="CTO", email="cto@acme.io")
    assert r.resolve(ident) is None  # absorbed: no account yet
    assert ident.user_traits is None
    assert r.users["u1"] == UserRecord(None, {"title": "CTO"})  # email is not a model trait
    grp = group("u1", "acme", plan="pro")
    assert r.resolve(grp) == "acme"
    assert grp.user_traits == {"title": "CTO"}
    assert grp.traits == {"plan": "pro"}  # the account's own traits are untouched


def test_identify_after_group_is_routed_with_merged_traits() -> None:
    r = AccountResolver(KEYS)
    r.resolve(identify("u1", title="Engineer"))
    r.resolve(group("u1", "acme"))
    ident = identify("u1", role="admin")
    assert r.resolve(ident) == "acme"
    assert ident.user_traits == {"title": "Engineer", "role": "admin"}
    later = identify("u1", title="CTO")
    assert r.resolve(later) == "acme"
    assert later.user_traits == {"title": "CTO", "role": "admin"}  # latest wins


def test_identify_with_context_group_id_is_routed_but_sets_no_membership() -> None:
    r = AccountResolver(KEYS)
    ident = identify("u1", account="beta", title="CTO")
    assert r.resolve(ident) == "beta"
    assert ident.user_traits == {"title": "CTO"}
    assert isinstance(r.resolve(track("u1")), Reject)


def test_user_switching_groups_latest_group_wins() -> None:
    r = AccountResolver(KEYS)
    r.resolve(identify("u1", title="CTO"))
    r.resolve(group("u1", "acme"))
    assert r.resolve(track("u1")) == "acme"
    moved = group("u1", "globex")
    assert r.resolve(moved) == "globex"
    assert moved.user_traits == {"title": "CTO"}
    assert r.resolve(track("u1")) == "globex"
    assert r.users["u1"] == UserRecord("globex", {"title": "CTO"})


def test_users_are_independent() -> None:
    r = AccountResolver(KEYS)
    r.resolve(group("u1", "acme"))
    assert isinstance(r.resolve(track("u2")), Reject)


def test_route_reports_unchanged_records_as_none() -> None:
    rec = UserRecord("acme", {"title": "CTO"})
    assert route(group("u1", "acme"), rec, KEYS) == ("acme", None)
    assert route(track("u1"), rec, KEYS) == ("acme", None)
    assert route(identify("u1", title="CTO", email="x"), rec, KEYS) == ("acme", None)
    target, new = route(identify("u1", title="CEO"), rec, KEYS)
    assert (target, new) == ("acme", UserRecord("acme", {"title": "CEO"}))
    assert rec.traits == {"title": "CTO"}  # the input record is not mutated


def test_route_identify_without_model_traits_keeps_nothing() -> None:
    assert route(identify("u1", email="x"), None, KEYS) == (None, None)


def test_records_drop_traits_the_model_no_longer_reads() -> None:
    old = UserRecord("acme", {"title": "CTO", "seniority": "exec"})
    ev = group("u1", "acme")
    target, new = route(ev, old, frozenset({"title"}))
    assert target == "acme" and new == UserRecord("acme", {"title": "CTO"})
    assert ev.user_traits == {"title": "CTO"}


def test_group_event_without_group_id_is_rejected() -> None:
    ev = Event(EventType.GROUP, "g", 1, "u1", None)
    target, new = route(ev, None, KEYS)
    assert isinstance(target, Reject) and target.reason is RejectReason.MISSING_ACCOUNT
    assert new is None


def test_user_traits_is_a_copy_not_the_stored_dict() -> None:
    r = AccountResolver(KEYS)
    r.resolve(identify("u1", title="CTO"))
    grp = group("u1", "acme")
    r.resolve(grp)
    assert grp.user_traits is not None
    grp.user_traits["title"] = "mutated downstream"
    assert r.users["u1"].traits == {"title": "CTO"}


@settings(max_examples=200)
@given(st.none() | st.text(max_size=5), json_objects)
def test_user_record_bytes_round_trip(account: str | None, traits: dict[str, Any]) -> None:
    rec = UserRecord(account, traits)
    assert UserRecord.from_bytes(rec.to_bytes()) == rec


def test_user_trait_keys_from_model() -> None:
    true = Expr("true", frozenset(), lambda _: True)
    model = Model(
        name="m",
        version=1,
        signals=(
            Signal("execs", SignalKind.USERS_WITH_TRAIT, trait="title", values=frozenset({"CTO"})),
            Signal("plan", SignalKind.TRAIT, trait="plan"),
            Signal("msgs", SignalKind.COUNT, events=frozenset({"Message Sent"})),
        ),
        score=(),
        qualify=Qualify(when=true, exit=None),
    )
    assert user_trait_keys(model) == frozenset({"title"})
