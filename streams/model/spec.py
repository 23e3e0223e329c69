"""The parsed PQL model: plain, immutable data. No parsing or evaluation lives here.

`streams.model.loader.load_model()` builds these from YAML; `streams.scoring` and
`streams.state` read them. Expressions are kept as compiled callables plus their source text and
the names they read, so the core never re-parses and never uses `eval`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A value an expression can see or produce.
Value = float | int | str | bool | None
# A compiled expression: reads a mapping of names (signals, traits, `score`, `pql`, earlier
# segments) and returns a value. Missing names read as None; comparisons with None are False.
Compiled = Callable[[Mapping[str, Any]], Any]


class SignalKind(StrEnum):
    COUNT = "count"  # number of matching events in the window
    SUM = "sum"  # sum of a numeric property over matching events in the window
    DISTINCT_USERS = "distinct_users"  # distinct users with a matching event in the window
    ACTIVE_DAYS = "active_days"  # UTC days with at least one matching event in the window
    EVER = "ever"  # 1 once a matching event was seen, else 0 (never expires)
    TRAIT = "trait"  # latest account (group) trait value
    USERS_WITH_TRAIT = "users_with_trait"  # users of the account whose latest trait is in a set


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed, compiled expression."""

    source: str  # the text as written in the model
    names: frozenset[str]  # every identifier it reads
    fn: Compiled  # evaluate against a mapping of names


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    kind: SignalKind
    # Event names matched. None means any event (`any`). Only for event-based kinds.
    events: frozenset[str] | None = None
    where: Expr | None = None  # filter over the event's properties
    property: str | None = None  # SUM: the numeric property summed
    # None: lifetime (no window); always None for EVER, TRAIT and USERS_WITH_TRAIT.
    window_ms: int | None = None
    bucket_ms: int | None = None  # event-time bucket size; None iff window_ms is None
    trait: str | None = None  # TRAIT / USERS_WITH_TRAIT: the trait name
    values: frozenset[Value] | None = None  # USERS_WITH_TRAIT: the accepted values (`in:`)
    # Windowed COUNT / SUM: each bucket weighs 0.5 ** (its age / half_life) (score decay).
    half_life_ms: int | None = None
    line: int = 0  # 1-based line in the model file, for messages


@dataclass(frozen=True, slots=True)
class WhenRule:
    """`{when: EXPR, points: N}`: N points while EXPR holds."""

    when: Expr
    points: float
    label: str  # how the rule is named in reasons: the `when` text, or `name:` if given
    line: int = 0


@dataclass(frozen=True, slots=True)
class PerRule:
    """`{per: SIGNAL, every: N, points: P, max: M}`: floor(SIGNAL / N) * P points, capped at M."""

    signal: str
    every: float
    points: float
    max: float | None
    label: str  # e.g. "5 points per 100 messages (max 40)", or `name:` if given
    line: int = 0


Rule = WhenRule | PerRule


@dataclass(frozen=True, slots=True)
class Qualify:
    when: Expr  # enter PQL
    exit: Expr | None  # leave PQL; None means `not when` (no hysteresis)


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    expr: Expr  # may read signals, traits, `score`, `pql` and segments defined above it
    line: int = 0


class Complexity(StrEnum):
    """How complex the product is to adopt: the more complex, the sooner sales or success
    should step in (`Playbook`)."""

    SIMPLE = "simple"
    INTERMEDIATE = "intermediate"
    COMPLEX = "complex"


@dataclass(frozen=True, slots=True)
class Route:
    """Who acts and how soon: a route name (self_serve, sales_assist, sales_led,
    customer_success, or the model's own) and the hours to respond within."""

    route: str
    respond_within_ms: int


@dataclass(frozen=True, slots=True)
class OwnerRule:
    """`{when: EXPR, owner: NAME}`: the owner of an account for which EXPR holds."""

    when: Expr
    owner: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Playbook:
    """What should happen when an account qualifies (`playbook:`; `streams.scoring.playbook`).

    The deal size (an expression over signals and score) falls in one of `bands` (name, lower
    bound; ascending, the first is the floor of everything); the route of a band comes from the
    complexity x deal-size matrix (`streams.model.playbook.DEFAULT_ROUTES`) unless the model
    names it. Entering one of `segments` calls for its own route. The owner is the `owner_trait`
    signal's value when the account has one, else the first `owner_rules` match, else a member
    of `owner_pool` chosen by the account id. Contacts: users in the `titles` signal (a
    users_with_trait signal), then the most recently active of the `active` signal (a windowed
    distinct_users signal), at most `max_contacts`. An account is not alerted again for the
    same play within `cooldown_ms` of its last alert."""

    complexity: Complexity
    deal_size: Expr
    bands: tuple[tuple[str, float], ...]
    routes: Mapping[str, Route]  # per band
    segments: Mapping[str, Route] = field(default_factory=dict)
    owner_trait: str | None = None
    owner_rules: tuple[OwnerRule, ...] = ()
    owner_pool: tuple[str, ...] = ()
    titles: str | None = None
    active: str | None = None
    max_contacts: int = 3
    cooldown_ms: int = 0
    source: str = ""  # the section's canonical YAML (what `pql model diff` compares)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    version: int
    signals: tuple[Signal, ...]
    score: tuple[Rule, ...]
    qualify: Qualify
    segments: tuple[Segment, ...] = ()
    description: str = ""
    # sha256 of the canonical model text; stamped in state so a changed model is never mixed
    # with state built by another one.
    fingerprint: str = ""
    source_path: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    playbook: Playbook | None = None

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def longest_window_ms(self) -> int:
        return max((s.window_ms or 0) for s in self.signals) if self.signals else 0


def signal_key(s: Signal) -> str:
    """A signal as it is computed (name, kind, events, `where` text, window, bucket, trait,
    half-life): two signals with the same key keep the same state. A half-life changes when the
    value changes by time alone (the state's expiries), so it makes another signal."""
    key: list[Any] = [
        s.name,
        s.kind.value,
        sorted(s.events) if s.events is not None else None,
        s.where.source if s.where is not None else None,
        s.property,
        s.window_ms,
        s.bucket_ms,
        s.trait,
        sorted(repr(v) for v in s.values) if s.values is not None else None,
    ]
    if s.half_life_ms is not None:  # only when set: every other key stays as it was
        key.append({"half_life": s.half_life_ms})
    return json.dumps(key)


def state_fingerprint(model: Model) -> str:
    """sha256 of what an account's kept state depends on: the signals' keys, in order. Two
    models with the same one read each other's state: a change to score rules, qualify/exit or
    segments keeps it; any change to a signal does not (the new signal needs history)."""
    text = "\n".join(signal_key(s) for s in model.signals)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
