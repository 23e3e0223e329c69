"""Switching to a model whose signals differ: their history comes from a backfill. The one
definition the worker and `pql backtest --switch-model` share.

A switch to NEW at stream time T keeps the account's state when only what is computed from the
signals changes (`streams.scoring.switch`). When NEW adds a signal, drops one, or computes one
differently (events, `where`, window, bucket...), the kept state cannot hold it: NEW's signals
are built first, from history, by a *backfill* — NEW run over the same events with its own
router and state, deciding nothing (`Scorer.absorb`) — while the current model keeps serving.
At T:

1. every account is advanced to T under the old model (its expiries up to T fire under it);
2. its new state is the backfilled one, except that every signal NEW computes exactly as the old
   model did is taken from the kept state (it has the longer history), and so are the account
   traits the old model read, the first-seen time and the worker's delivery positions;
3. NEW takes the old decision and decides in full at T, as any switch: what differs is emitted
   as `model_change` transitions at T (`Scorer.rescore`). Every event from T on applies under
   NEW, to the new state.

The backfill reads what history there is. When it starts after the first event the account
stream ever had (the input topic's retention is shorter than the app's life, or the history
file starts later), each *backfilled* signal (those not carried over) is **partial** until its
window has filled, i.e. until `history_from + window` (a signal without a window stays partial):
every transition NEW decides while some are lists them in `partial_signals`, with
`model.backfilled_from` = the start of the history read.

Routing is not backfilled: a model reading a user trait the old one did not keep (a new
`users_with_trait` trait) cannot take over (the user records hold only the traits the model
reads); such a change needs a replay under a new app id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.events.resolver import user_trait_keys
from streams.model.spec import Model, signal_key
from streams.scoring.engine import Scorer
from streams.scoring.signals import SignalPlan
from streams.scoring.switch import IncompatibleModel, check_switch, signal_changes
from streams.state.account import AccountState


@dataclass(frozen=True, slots=True)
class Carry:
    """Which of NEW's signals take the kept state's: (new index, old index) pairs; the rest are
    the backfilled ones."""

    pairs: tuple[tuple[int, int], ...]
    backfilled: tuple[int, ...]
    old_traits: frozenset[str]  # account traits the old model kept


def carry(old: Model, new: Model) -> Carry:
    before = {signal_key(s): i for i, s in enumerate(old.signals)}
    pairs: list[tuple[int, int]] = []
    backfilled: list[int] = []
    for j, s in enumerate(new.signals):
        i = before.get(signal_key(s))
        if i is None:
            backfilled.append(j)
        else:
            pairs.append((j, i))
    return Carry(tuple(pairs), tuple(backfilled), frozenset(SignalPlan(old).account_traits))


def needs_backfill(old: Model, new: Model) -> bool:
    """True when `new` can follow `old` only after a backfill (its signals differ)."""
    return bool(signal_changes(old, new))


def check_backfill(old: Model, new: Model) -> list[str]:
    """Raise `IncompatibleModel` unless `new` can follow `old` at a switch, with a backfill of
    the signals that changed; those changes, one line each (empty: no backfill needed)."""
    changes = signal_changes(old, new)
    if not changes or new.name != old.name or new.version == old.version:
        check_switch(old, new)  # the same checks, and their messages
        return []
    if new.version < old.version:
        raise IncompatibleModel(
            f"{new.name} v{new.version} is older than the live v{old.version}: a model with "
            "other signals can only follow with a later version"
        )
    if user_trait_keys(new) != user_trait_keys(old):
        raise IncompatibleModel(
            f"{new.name} v{new.version} reads other user traits than v{old.version} "
            f"({', '.join(sorted(user_trait_keys(old))) or 'none'} -> "
            f"{', '.join(sorted(user_trait_keys(new))) or 'none'}): routing keeps only the "
            "user traits the model reads, so this change cannot be backfilled; deploy it under "
            "a new app id and replay the input"
        )
    return changes


def partial_windows(new: Model, c: Carry) -> list[tuple[str, int | None]]:
    """(name, window ms or None for a lifetime signal) of each backfilled signal."""
    return [(new.signals[j].name, new.signals[j].window_ms) for j in c.backfilled]


def merge(
    new: Scorer,
    c: Carry,
    kept: AccountState | None,
    backfilled: AccountState | None,
    at: int,
) -> AccountState:
    """The account's state under NEW at `at` (see module, step 2). Both states have been
    advanced to `at`; `kept` holds the live decision."""
    state = backfilled if backfilled is not None else new.new_state(())
    state.model = new.model_tag
    state.version = new.model.version
    if kept is not None:
        for j, i in c.pairs:
            state.signals[j] = kept.signals[i]
        # A trait the old model kept comes from the kept state, any other from the backfill.
        sources = [
            (k, kept.traits if k in c.old_traits else state.traits) for k in new.plan.account_traits
        ]
        state.traits = {k: src[k] for k, src in sources if k in src}
        state.traits_ts = max(state.traits_ts, kept.traits_ts)
        state.first_seen = min(state.first_seen, kept.first_seen) if backfilled else kept.first_seen
        state.clock = max(state.clock, kept.clock)
        state.seen = kept.seen
        state.score, state.pql = kept.score, kept.pql
        state.segments = list(kept.segments)
        state.evaluated = kept.evaluated
        state.alerted = kept.alerted
        state.recent = kept.recent
        state.first_pql, state.entered, state.converted = (
            kept.first_pql,
            kept.entered,
            kept.converted,
        )
    else:
        # An account only the backfill knows (the kept state is gone): never decided live.
        state.score, state.pql, state.segments, state.evaluated = 0, False, [], True
    state.shadows = {}
    Scorer.forget(state)
    new.plan.expire(state, at)  # the next expiry, over the signals it has now
    return state


def switch_backfilled(
    old: Scorer,
    new: Scorer,
    c: Carry,
    account_id: str,
    kept: AccountState | None,
    backfilled: AccountState | None,
    at: int,
) -> tuple[AccountState, list[dict[str, Any]]]:
    """Switch one account to NEW at `at` over its backfilled state (see module): (its new
    state, the old model's transitions up to `at` then NEW's `model_change` ones)."""
    transitions = old.advance(account_id, kept, at) if kept is not None else []
    if backfilled is not None:
        new.absorb_until(backfilled, at)
    state = merge(new, c, kept, backfilled, at)
    transitions.extend(new.rescore(account_id, state, at))
    return state, transitions
