"""The lookup API's answers (`streams.app.lookup`) and its request checks (`streams.app.api`),
without a worker: states from the scoring core, as the worker keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

from streams.app.api import ApiError, LookupApi, _query
from streams.app.lookup import account_view, matches, pql_item
from streams.app.membership import Membership
from streams.model.loader import load_model
from tests.unit.scoring.util import DAY, HOUR, T0, Harness, group, identify, iso, track

ROOT = Path(__file__).resolve().parents[3]


def _acme() -> Harness:
    h = Harness(load_model(ROOT / "examples" / "team-chat.yaml"))
    h.send(group("u1", "acme", T0, {"employees": 250, "industry": "finance"}))
    h.send(identify("u1", T0 + 1, {"title": "VP Sales"}))
    h.send(track("Onboarding Completed", T0 + HOUR))
    for i in range(6):
        h.send(track("Message Sent", T0 + 2 * HOUR + i))
    h.send(track("Invite Sent", T0 + DAY))
    return h


def test_an_accounts_view() -> None:
    h = _acme()
    state = h.states["acme"]
    view = account_view("acme", state, h.scorer)
    assert view["pql"] is True and view["score"] == state.score == 120
    assert view["model"] == {"name": "team-chat", "version": 3}
    assert view["signals"]["messages"] == 6 and view["signals"]["industry"] == "finance"
    assert {r["rule"] for r in view["reasons"]} >= {"onboarded", "invites >= 1"}
    assert view["playbook"]["owner"] == "fin-team@example.com"  # the territory rule
    assert view["playbook"]["route"] == "sales_assist" and view["playbook"]["alert"] is False
    assert view["playbook"]["contacts"][0] == {"user_id": "u1", "why": "vp_users"}
    assert view["first_seen"] == iso(T0) and view["as_of"] == iso(T0 + DAY)
    ids = [t["transition_id"] for t in h.transitions if t["account_id"] == "acme"]
    assert [t["transition_id"] for t in view["last_transitions"]] == ids[-5:][::-1]
    assert view["last_transitions"][0]["kind"] in {"qualified", "segment_entered"}
    item = pql_item("acme", state, h.scorer)
    assert item == {
        "account_id": "acme",
        "score": 120,
        "segments": list(state.segments),
        "route": "sales_assist",
        "owner": "fin-team@example.com",
        "deal_band": "medium",
        "qualified_at": iso(T0 + DAY),
    }
    assert matches(item, "icp_pql", "sales_assist", None)
    assert not matches(item, "purgatory", None, None)
    assert not matches(item, None, "sales_led", None)
    assert not matches(item, None, None, "ana@example.com")


def test_membership_follows_transitions_and_revocations() -> None:
    m = Membership()
    m.on_transition({"kind": "qualified", "account_id": "a", "segment": None})
    m.on_transition({"kind": "qualified", "account_id": "a", "segment": None})  # re-emitted
    m.on_transition({"kind": "segment_entered", "account_id": "a", "segment": "s"})
    m.on_transition({"kind": "qualified", "account_id": "b", "segment": None})
    m.on_transition({"kind": "disqualified", "account_id": "b", "segment": None})
    assert m.pqls == {"a"} and m.pql_accounts == 1 and m.segment_accounts["s"] == 1
    m.forget(["a"])
    assert m.pqls == set()


def _request(query: dict[str, Any] | list[tuple[str, str]]) -> Any:
    class Request:
        pass

    r = Request()
    r.query = MultiDict(query)  # type: ignore[attr-defined]
    return r


def test_the_query_is_checked() -> None:
    assert _query(_request({})) == {
        "segment": None, "route": None, "owner": None, "cursor": None, "limit": 100,
        "scope": "all",
    }  # fmt: skip
    assert _query(_request({"limit": "7", "cursor": "m", "scope": "local"}))["limit"] == 7
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"limit": "-1"},
                {"scope": "some"}, {"segment": ""}, [("route", "a"), ("route", "b")]):  # fmt: skip
        with pytest.raises(ApiError) as err:
            _query(_request(bad))
        assert err.value.status == 400


def test_the_token_is_checked() -> None:
    api = LookupApi(None, None, 4, "s3cret", dict)  # type: ignore[arg-type]
    api.check_auth(CIMultiDict({"Authorization": "Bearer s3cret"}))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
        with pytest.raises(ApiError) as err:
            api.check_auth(CIMultiDict(headers))
        assert err.value.status == 401
    LookupApi(None, None, 4, None, dict).check_auth(CIMultiDict())  # type: ignore[arg-type]
