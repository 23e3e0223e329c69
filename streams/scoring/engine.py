"""The scoring engine: apply an event to an account, or advance an account's time.

Time semantics (the same in the worker and in `pql backtest`; README "Time semantics"):

1. Account time. Each account has its own clock: the last instant it was evaluated at. Before an
   event at time t is applied, the account is advanced to t: every window expiry in
   (clock, t] fires in time order and the account is evaluated at that exact expiry instant.
   Then the event is applied and the account evaluated at t. So everything an account does
   depends only on its own events, in their order.
2. Time passing. `advance(account, W)` fires expiries up to a watermark W without an event; the
   worker drives it from stream time, the backtest from the file. The resulting transitions have
   `occurred_at` = the expiry instant (at bucket granularity) and trigger "time", so their ids do
   not depend on when W happened to pass.
3. Late events (t < the account's clock): if t is still inside the model's longest window the
   event is applied to its own bucket (only for signals whose bucket has not already expired) and
   the account is evaluated at its current clock; otherwise it is rejected as `too_late` (the
   worker sends it to the dead-letter topic). Both are counted.
4. Duplicates: an event whose messageId the account already applied (within the horizon of
   `streams.state.dedup`) is skipped and reported as a duplicate, before anything else.
5. Evaluation runs only when a value changed, so an event the model does not read costs a dict
   lookup. And it is incremental: each account state carries an in-memory `EvalCache` (an
   undeclared attribute, never encoded) of its last decision, and an evaluation recomputes only
   the rules, qualify condition and segments reading a signal that changed (see
   `streams.scoring.evaluate`). A state without one (new, or freshly decoded from bytes) is
   evaluated in full, which is also the reference the incremental path must agree with
   (`Scorer(model, incremental=False)` always evaluates in full).
6. Model versions: a scorer's model applies from `effective_from_ms` (0: from the start). State
   is tagged with the signals' fingerprint, so a model with the same signals takes over an
   account's state as it is; `rescore` then re-decides it under the new model at the switch
   instant (`streams.scoring.switch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.events.types import Event, Reject, RejectReason
from streams.model.spec import Model, state_fingerprint
from streams.scoring.evaluate import EvalCache, Evaluator
from streams.scoring.playbook import Plays
from streams.scoring.signals import SignalPlan
from streams.scoring.summary import Summarizer
from streams.scoring.transitions import (
    DISQUALIFIED,
    QUALIFIED,
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
    build_transition,
    iso_ms,
)
from streams.state.account import (
    NEVER,
    RECENT_TRANSITIONS,
    AccountState,
    Decision,
    StateCodec,
    recent_entry,
)
from streams.state.dedup import digest, remember, seen

# The attribute of an AccountState holding its EvalCache (AccountState has dict=True for it).
_CACHE = "_eval_cache"


def wall_clock_ms() -> float:
    return time.time() * 1000


@dataclass(slots=True)
class Outcome:
    """What applying one event did."""

    state: AccountState
    transitions: list[dict[str, Any]] = field(default_factory=list)
    late: bool = False  # applied although older than the account's clock
    reject: Reject | None = None  # not applied (the state is unchanged)
    duplicate: bool = False  # not applied: the account already applied this messageId


class Scorer:
    def __init__(
        self,
        model: Model,
        now_ms: Callable[[], float] = wall_clock_ms,
        *,
        incremental: bool = True,
        effective_from_ms: int = 0,
    ) -> None:
        self.model = model
        self.effective_from_ms = effective_from_ms
        self.effective_from = iso_ms(effective_from_ms)
        self.plan = SignalPlan(model)
        self.evaluator = Evaluator(model)
        # Off: every evaluation is a full one (the reference the tests compare against).
        self.incremental = incremental and self.evaluator.incremental
        self.now_ms = now_ms
        self.model_tag = state_fingerprint(model)[:16]
        # States written before the tag named the signals carry the whole model's fingerprint.
        legacy = (model.fingerprint[:16],) if model.fingerprint else ()
        self.codec = StateCodec(self.model_tag, also=legacy)
        self.longest_window = model.longest_window_ms
        self.segment_names = [s.name for s in model.segments]
        self.summarizer = Summarizer(model)
        self.plays = Plays(model, model.playbook) if model.playbook is not None else None
        # Per signal index: its name and bound `value` (what an incremental evaluation reads).
        self._value_of = [(op.spec.name, op.value) for op in self.plan.ops]
        # Shadow models (`streams.scoring.shadow`): each decides, beside this one, the accounts
        # whose state has a decision of its version; their transitions wait in `shadow_out`.
        self.shadows: list[Scorer] = []
        self.shadow_out: list[dict[str, Any]] = []
        # Signals built by a backfill that started after the history did
        # (`streams.scoring.backfill`): (name, the instant its window has filled, or None).
        self.partial: list[tuple[str, int | None]] = []
        self.backfilled_from: str | None = None

    def backfilled(self, history_from_ms: int, windows: list[tuple[str, int | None]]) -> None:
        """This model's signals `windows` (name, window ms or None) were backfilled from
        history starting at `history_from_ms`: they are partial until their window has filled
        (a lifetime signal stays partial), and its transitions say so."""
        self.backfilled_from = iso_ms(history_from_ms)
        self.partial = [(n, None if w is None else history_from_ms + w) for n, w in windows]

    def partial_at(self, at: int) -> list[str]:
        """The backfilled signals still partial at instant `at`."""
        return [n for n, until in self.partial if until is None or at < until]

    # -- state -----------------------------------------------------------------------------
    def new_state(self, shadows: Iterable[int] | None = None) -> AccountState:
        """A new account's state; it is decided by the shadow models of versions `shadows`
        too (None: by every one of `self.shadows`)."""
        if shadows is None:
            shadows = [s.model.version for s in self.shadows]
        return AccountState(
            model=self.model_tag,
            signals=self.plan.new_signal_states(),
            version=self.model.version,
            shadows={v: Decision() for v in shadows},
        )

    # -- events ----------------------------------------------------------------------------
    def apply(
        self,
        account_id: str,
        state: AccountState | None,
        ev: Event,
        shadows: Iterable[int] | None = None,
    ) -> Outcome:
        """Apply one event (`shadows`: for a new account, see `new_state`)."""
        ts = ev.ts
        d: bytes | None = None
        if state is None:
            state = self.new_state(shadows)
            state.first_seen = ts
            state.clock = ts
        elif state.dedup_ids and seen(state, d := digest(ev.message_id)):
            return Outcome(state, duplicate=True)
        elif ts < state.clock:
            return self._apply_late(account_id, state, ev, d)
        transitions = self.advance(account_id, state, ts) if state.next_expiry <= ts else []
        changed = self.plan.apply(state, ev)
        state.clock = ts
        if changed:
            remember(state, d or digest(ev.message_id), ts)
        if changed or not state.evaluated:
            found = self._evaluate(account_id, state, ts, ev.message_id, changed)
            if found:
                transitions.extend(found)
        return Outcome(state, transitions)

    def _apply_late(
        self, account_id: str, state: AccountState, ev: Event, d: bytes | None
    ) -> Outcome:
        if self.longest_window and ev.ts <= state.clock - self.longest_window:
            reject = Reject(
                RejectReason.TOO_LATE,
                f"event time {ev.ts} is older than account {account_id}'s time {state.clock} "
                f"minus the model's longest window ({self.longest_window} ms)",
                "$.timestamp",
            )
            return Outcome(state, reject=reject)
        if ev.ts < state.first_seen:
            state.first_seen = ev.ts
        out = Outcome(state, late=True)
        changed = self.plan.apply(state, ev)
        if changed:
            remember(state, d or digest(ev.message_id), ev.ts)
            out.transitions = self._evaluate(account_id, state, state.clock, ev.message_id, changed)
        return out

    def absorb(self, state: AccountState | None, ev: Event) -> AccountState:
        """A backfill's `apply`: the event changes the signals exactly as `apply` would (a new
        account gets a state), and nothing is decided (`streams.scoring.backfill`)."""
        ts = ev.ts
        d: bytes | None = None
        if state is None:
            state = self.new_state(())
            state.first_seen = ts
            state.clock = ts
        elif state.dedup_ids and seen(state, d := digest(ev.message_id)):
            return state
        elif ts < state.clock:
            if self.longest_window and ts <= state.clock - self.longest_window:
                return state
            if ts < state.first_seen:
                state.first_seen = ts
            if self.plan.apply(state, ev):
                remember(state, d or digest(ev.message_id), ts)
            return state
        if state.next_expiry <= ts:
            self.absorb_until(state, ts)
        if self.plan.apply(state, ev):
            remember(state, d or digest(ev.message_id), ts)
        state.clock = ts
        return state

    def absorb_until(self, state: AccountState, until: int) -> None:
        """A backfill's `advance`: every expiry at or before `until`, deciding nothing."""
        while state.next_expiry <= until:
            at = state.next_expiry
            self.plan.expire(state, at)
            if at > state.clock:
                state.clock = at

    # -- time ------------------------------------------------------------------------------
    def advance(self, account_id: str, state: AccountState, until: int) -> list[dict[str, Any]]:
        """Fire every expiry at or before `until`, each evaluated at its own instant."""
        out: list[dict[str, Any]] = []
        while state.next_expiry <= until:
            at = state.next_expiry
            changed = self.plan.expire(state, at)
            if at > state.clock:
                state.clock = at
            if changed:
                out.extend(self._evaluate(account_id, state, at, None, changed))
        return out

    @staticmethod
    def next_expiry(state: AccountState) -> int | None:
        return None if state.next_expiry >= NEVER else state.next_expiry

    # -- model versions --------------------------------------------------------------------
    def rescore(self, account_id: str, state: AccountState, at: int) -> list[dict[str, Any]]:
        """This scorer's model takes over `state` (kept under another model with the same
        signals) at instant `at`: evaluate it in full there and return what changed, as
        `model_change` transitions. The caller has advanced the state to `at` under the
        previous model; the account's clock moves to `at` (an event older than the switch is
        applied late, under this model)."""
        self.forget(state)
        state.version = self.model.version
        if at > state.clock:
            state.clock = at
        if not state.evaluated:
            return []  # never decided (cannot happen for a state an event built)
        return self._decide(account_id, state, state, at, None, [], model_change=True)

    def adopt(
        self, account_id: str, state: AccountState, shadow: Decision, at: int
    ) -> list[dict[str, Any]]:
        """`rescore` for a model that ran as a shadow over this account: its own decision
        (`shadow`) becomes the live one at `at`, so the live model goes on exactly where the
        shadow was; what differs from the previous live decision is emitted as `model_change`
        transitions."""
        self.forget(state)
        state.version = self.model.version
        if at > state.clock:
            state.clock = at
        if not shadow.evaluated:
            return []
        values = self.evaluator.evaluate(self.plan.values(state), shadow.pql).values
        values["pql"] = shadow.pql
        for name in self.segment_names:
            values[name] = name in shadow.segments
        state.evaluated = True
        return self._settle(
            account_id,
            state,
            state,
            shadow.score,
            shadow.pql,
            tuple(shadow.segments),
            values,
            at,
            None,
            model_change=True,
        )

    def start_shadow(self, account_id: str, state: AccountState, at: int) -> list[dict[str, Any]]:
        """Start this model as a shadow over `state` at `at` (advanced there under the live
        model): it takes a copy of the live decision and decides in full; what it decides
        differently is returned as its `model_change` transitions (`streams.scoring.shadow`)."""
        version = self.model.version
        if version in state.shadows:  # started already
            return []
        decision = state.shadows[version] = Decision(
            state.score, state.pql, list(state.segments), state.evaluated, dict(state.alerted)
        )
        # The account's clock stays: the live model's decisions must not depend on whether a
        # shadow runs beside it (an event older than `at` read later is applied as it would be).
        if not decision.evaluated:
            return []
        return self._decide(account_id, state, decision, at, None, [], model_change=True)

    def take_shadow(self) -> list[dict[str, Any]]:
        """The shadow models' transitions since the last call (`streams.scoring.shadow`)."""
        out, self.shadow_out = self.shadow_out, []
        return out

    # -- evaluation ------------------------------------------------------------------------
    @staticmethod
    def forget(state: AccountState | Decision) -> None:
        """Drop the state's evaluation cache: call after changing its signals other than
        through this scorer (the next evaluation is then a full one)."""
        state.__dict__.pop(_CACHE, None)

    def _evaluate(
        self,
        account_id: str,
        state: AccountState,
        at: int,
        message_id: str | None,
        changed: list[int],
    ) -> list[dict[str, Any]]:
        """The live model decides; so does every shadow model running over the account (their
        transitions are kept for `take_shadow`)."""
        if state.shadows:
            for shadow in self.shadows:
                decision = state.shadows.get(shadow.model.version)
                if decision is not None:
                    found = shadow._decide(account_id, state, decision, at, message_id, changed)
                    if found:
                        self.shadow_out.extend(found)
        return self._decide(account_id, state, state, at, message_id, changed)

    def _decide(
        self,
        account_id: str,
        state: AccountState,
        d: AccountState | Decision,
        at: int,
        message_id: str | None,
        changed: list[int],
        *,
        model_change: bool = False,
    ) -> list[dict[str, Any]]:
        """This model decides the account (its signals in `state`) again: `d` holds its
        decision (the state itself for the live model, a shadow's `Decision`)."""
        # The decision's cache, if this scorer made it and the decision is still the one it
        # recorded (anything else: evaluate in full, and keep that as the new cache).
        cache: EvalCache | None = d.__dict__.get(_CACHE) if self.incremental else None
        if (
            cache is None
            or cache.owner is not self.evaluator
            or not d.evaluated
            or d.score is not cache.score
            or d.pql is not cache.pql
            or d.segments is not cache.segments
        ):
            cache = self.evaluator.evaluate(self.plan.values(state), d.pql)
            if self.incremental:
                d.__dict__[_CACHE] = cache
        else:
            values = cache.values
            sigs = state.signals
            value_of = self._value_of
            for i in changed:
                name, value = value_of[i]
                values[name] = value(sigs[i], state)
            if not self.evaluator.reevaluate(cache, changed, d.pql):
                d.score = cache.score
                return []
        d.evaluated = True
        out = self._settle(
            account_id,
            state,
            d,
            cache.score,
            cache.pql,
            cache.members,
            cache.values,
            at,
            message_id,
            model_change=model_change,
        )
        cache.segments = d.segments
        return out

    def _settle(
        self,
        account_id: str,
        state: AccountState,
        d: AccountState | Decision,
        score: int | float,
        pql: bool,
        segments: tuple[str, ...],
        values: dict[str, Any],
        at: int,
        message_id: str | None,
        *,
        model_change: bool = False,
    ) -> list[dict[str, Any]]:
        """Record the decision (`score`, `pql`, `segments`) in `d`; return a transition per
        change from what `d` held (`state`: the account's, whose signals `d` was decided
        from)."""
        changes: list[tuple[str, str | None]] = []
        if pql != d.pql:
            changes.append((QUALIFIED if pql else DISQUALIFIED, None))
        if tuple(d.segments) != segments:
            before = set(d.segments)
            after = set(segments)
            for name in self.segment_names:
                if name in after and name not in before:
                    changes.append((SEGMENT_ENTERED, name))
                elif name in before and name not in after:
                    changes.append((SEGMENT_EXITED, name))
            d.segments = list(segments)
        previous_score = d.score
        d.score = score
        d.pql = pql
        if not changes:
            return []
        reasons = self.evaluator.reasons(values)
        signals = {name: values[name] for name in self.plan.names}
        detected = self.now_ms()
        out = []
        for kind, segment in changes:
            condition = self.evaluator.condition(kind, segment, values)
            out.append(
                build_transition(
                    model_name=self.model.name,
                    model_version=self.model.version,
                    account_id=account_id,
                    kind=kind,
                    segment=segment,
                    score=score,
                    previous_score=previous_score,
                    pql=pql,
                    segments=list(segments),
                    reasons=reasons,
                    condition=condition,
                    signals=signals,
                    occurred_at_ms=at,
                    detected_at_ms=detected,
                    message_id=message_id,
                    effective_from=self.effective_from,
                    model_change=model_change,
                    partial_signals=self.partial_at(at) if self.partial else None,
                    backfilled_from=self.backfilled_from,
                    summary=self.summarizer.summary(
                        account_id,
                        kind,
                        segment,
                        score,
                        previous_score,
                        reasons,
                        condition,
                        signals,
                    ),
                    playbook=(
                        self.plays.play(account_id, kind, segment, values, state, d, at)
                        if self.plays is not None
                        else None
                    ),
                )
            )
        if d is state:  # the live decision: the lookup API's last transitions, the funnel's
            if pql and not state.first_pql:
                state.first_pql = at
            recent = state.recent
            recent.extend(
                recent_entry(at, t["kind"], t["segment"], t["transition_id"]) for t in out
            )
            del recent[:-RECENT_TRANSITIONS]
        return out
