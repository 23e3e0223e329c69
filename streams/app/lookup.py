"""What the lookup API says about an account, from its state and the model that decided it
(`streams.app.api` serves it). No Faust here: a state and a scorer in, JSON-ready dicts out.

The decision (`pql`, `score`, `segments`) is the one the account's last transition reported;
`signals` and `reasons` are computed from the state as of the account's own time (`as_of`: its
last event or window expiry), like the transitions; `playbook` is the account's standing play
(route, owner, contacts) as a qualification at `as_of` would get it, without an alert.
"""

from __future__ import annotations

from typing import Any

from streams.scoring.engine import Scorer
from streams.scoring.transitions import QUALIFIED, iso_ms
from streams.state.account import AccountState, recent_transition


def _values(scorer: Scorer, state: AccountState) -> dict[str, Any]:
    values: dict[str, Any] = dict(scorer.plan.values(state))
    return scorer.evaluator.evaluate(values, state.pql).values


def playbook_of(
    account_id: str, state: AccountState, scorer: Scorer, values: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    if scorer.plays is None:
        return None
    values = values if values is not None else _values(scorer, state)
    return scorer.plays.play(account_id, QUALIFIED, None, values, state, None, state.clock)


def account_view(account_id: str, state: AccountState, scorer: Scorer) -> dict[str, Any]:
    values = _values(scorer, state)
    model = scorer.model
    return {
        "account_id": account_id,
        "model": {"name": model.name, "version": model.version},
        "pql": state.pql,
        "score": state.score,
        "segments": list(state.segments),
        "signals": {name: values[name] for name in scorer.plan.names},
        "reasons": scorer.evaluator.reasons(values),
        "playbook": playbook_of(account_id, state, scorer, values),
        "first_seen": iso_ms(state.first_seen),
        "as_of": iso_ms(state.clock),
        "last_transitions": [
            {"occurred_at": iso_ms(at), "kind": kind, "segment": segment, "transition_id": tid}
            for at, kind, segment, tid in map(recent_transition, reversed(state.recent))
        ],
    }


def pql_item(account_id: str, state: AccountState, scorer: Scorer) -> dict[str, Any]:
    """One row of `GET /v1/pqls`."""
    playbook = playbook_of(account_id, state, scorer)
    qualified = [at for at, kind, _, _ in map(recent_transition, state.recent) if kind == QUALIFIED]
    qualified_at = qualified[-1] if qualified else None
    return {
        "account_id": account_id,
        "score": state.score,
        "segments": list(state.segments),
        "route": playbook["route"] if playbook else None,
        "owner": playbook["owner"] if playbook else None,
        "deal_band": playbook["deal_band"] if playbook else None,
        "qualified_at": iso_ms(qualified_at) if qualified_at is not None else None,
    }


def matches(
    item: dict[str, Any], segment: str | None, route: str | None, owner: str | None
) -> bool:
    return (
        (segment is None or segment in item["segments"])
        and (route is None or item["route"] == route)
        and (owner is None or item["owner"] == owner)
    )
