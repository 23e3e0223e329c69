"""Test harness for the scoring core: models as YAML text, events as Segment-spec dicts routed
through the same resolver the backtest uses, and every emitted transition checked against
schemas/pql-transition.schema.json."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from streams.events.parse import event_from_obj
from streams.events.resolver import AccountResolver
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, Reject
from streams.model.loader import parse_model
from streams.model.spec import Model
from streams.scoring.engine import Outcome, Scorer
from streams.scoring.transitions import iso_ms
from streams.state.account import AccountState

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schemas" / "pql-transition.schema.json").read_text())
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
FORMAT_CHECKER = FormatChecker()


# jsonschema checks "date-time" only when the optional rfc3339-validator package is installed,
# which pyproject does not require: without this, a malformed occurred_at would pass silently.
@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # calendar check; raises ValueError
    return True


VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FORMAT_CHECKER)

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = iso_to_epoch_ms("2026-01-05T00:00:00Z")  # a Monday, midnight UTC: day-bucket aligned
assert T0 is not None and T0 % DAY == 0

FIXED_NOW = float(T0 + 1000 * DAY)


def model(text: str) -> Model:
    return parse_model(textwrap.dedent(text))


def iso(ms: int) -> str:
    return iso_ms(ms)


def validate(t: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(t), key=str)
    assert not errors, [e.message for e in errors]


def brief(t: dict[str, Any]) -> tuple[Any, ...]:
    """(kind, segment, account, occurred_at, score, trigger, message_id)."""
    return (
        t["kind"],
        t["segment"],
        t["account_id"],
        t["occurred_at"],
        t["score"],
        t["trigger"],
        t["message_id"],
    )


# Generated message ids have a prefix no test spells out: a test's own "m1" never collides
# with one generated for another event (that made a test depend on which ran before it).
_seq = [0]


def track(
    name: str,
    ts: int,
    user: str = "u1",
    account: str | None = "acme",
    props: dict[str, Any] | None = None,
    mid: str | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "track", "event": name, "userId": user, "timestamp": iso(ts)}
    if account is not None:
        obj["context"] = {"groupId": account}
    if props is not None:
        obj["properties"] = props
    if mid is None:
        _seq[0] += 1
        mid = f"auto-m{_seq[0]}"
    obj["messageId"] = mid
    return obj


def identify(user: str, ts: int, traits: dict[str, Any], mid: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "identify", "userId": user, "timestamp": iso(ts)}
    obj["traits"] = traits
    if mid is None:
        _seq[0] += 1
        mid = f"auto-i{_seq[0]}"
    obj["messageId"] = mid
    return obj


def group(
    user: str, account: str, ts: int, traits: dict[str, Any], mid: str | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "group",
        "userId": user,
        "groupId": account,
        "timestamp": iso(ts),
        "traits": traits,
    }
    if mid is None:
        _seq[0] += 1
        mid = f"auto-g{_seq[0]}"
    obj["messageId"] = mid
    return obj


class Harness:
    """Resolver + Scorer over a dict of states, like the backtest but driven by hand."""

    def __init__(self, m: Model | str, now: Callable[[], float] = lambda: FIXED_NOW) -> None:
        self.model = model(m) if isinstance(m, str) else m
        self.scorer = Scorer(self.model, now_ms=now)
        self.resolver = AccountResolver(self.scorer.plan.user_traits)
        self.states: dict[str, AccountState] = {}
        self.transitions: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []

    def send(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        ev = event_from_obj(obj)
        assert isinstance(ev, Event), ev
        return self.send_event(ev)

    def send_event(self, ev: Event) -> list[dict[str, Any]]:
        routed = self.resolver.resolve(ev)
        if routed is None:
            return []
        assert not isinstance(routed, Reject), routed
        out = self.scorer.apply(routed, self.states.get(routed), ev)
        self.outcomes.append(out)
        if out.reject is None:
            self.states[routed] = out.state
        return self._record(out.transitions)

    def advance(self, account: str, until: int) -> list[dict[str, Any]]:
        return self._record(self.scorer.advance(account, self.states[account], until))

    def advance_all(self, until: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for account in sorted(self.states):
            out += self.advance(account, until)
        return out

    def values(self, account: str = "acme") -> dict[str, Any]:
        return self.scorer.plan.values(self.states[account])

    def value(self, name: str, account: str = "acme") -> Any:
        return self.values(account)[name]

    def _record(self, ts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for t in ts:
            validate(t)
        self.transitions += ts
        return ts
