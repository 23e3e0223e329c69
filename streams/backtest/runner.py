"""Offline replay: the same parsing, account resolution and scoring the worker runs, over files.

Order (README "Time semantics"): events are applied in the canonical order of
`streams.events.order` — event time, then identify/group before track, then messageId — the
order the worker restores from its input partitions. Files need not be sorted: events are held
until the latest event time read has moved `max_disorder_ms` (default one hour, `pql backtest
--max-disorder`) past them, then routed and applied in that order; events at the latest
millisecond wait for a later one (or the end of the input), so ties always follow the key. An
event older than what was already applied (out of order by more than `max_disorder_ms`) is
routed and applied at once, through the late path every late event takes, and counted
(`events_out_of_order`). A time-sorted file therefore gives the same transitions whatever
`max_disorder_ms` is.

Whenever the time of the applied events passes an account's next window expiry that account is
advanced, exactly as the worker does from stream time. At the end of the input every held event
is applied and every account advanced to the last event time (or to `until`, to see who would
drop out if nothing else happened).

Model switches (`pql backtest --switch-model TIME=FILE`) happen as in the worker
(`streams.scoring.switch`): before the first event at or after TIME is applied (or when time is
advanced past it at the end), every account is advanced to TIME under the old model and decided
again under the new one there.

A switch to a model whose signals differ needs their history: the backtest builds it beside the
live model from the start of the input (or from `backfill_from_ms`, `pql backtest
--backfill-from`, as a live backfill limited by retention would) and switches over it
(`streams.scoring.backfill`).

Shadow models (`pql backtest --shadow TIME=FILE`, `streams.scoring.shadow`) start the same way
at TIME and then decide every account beside the live model; their transitions go to their own
sink. A switch to a shadow's model (its promotion) takes the shadow's decisions as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mypy_extensions import mypyc_attr

from streams.backtest.summary import SummaryBuilder
from streams.events.order import HoldBuffer, order_key
from streams.events.parse import parse_event
from streams.events.routing import Router
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, Reject
from streams.model.spec import Model
from streams.scoring.backfill import (
    Carry,
    carry,
    check_backfill,
    partial_windows,
    switch_backfilled,
)
from streams.scoring.engine import Scorer
from streams.scoring.shadow import ShadowStart, check_shadow, start_shadow
from streams.scoring.switch import IncompatibleModel, ModelSwitch, switch_account
from streams.scoring.timers import ExpiryIndex
from streams.state.account import AccountState

TransitionSink = Callable[[dict[str, Any]], None]
DEFAULT_MAX_DISORDER_MS = 3_600_000
_NONE = -(2**62)
_NEVER = 2**62


@dataclass
class _Backfill:
    """A switch's model built beside the live one, deciding nothing, until its switch."""

    scorer: Scorer
    router: Router
    carry: Carry
    from_ms: int | None  # None: from the first event (the whole history)
    changes: list[str]
    states: dict[str, AccountState]


@dataclass
class RejectedLine:
    line_no: int
    reason: str
    detail: str


@mypyc_attr(allow_interpreted_subclasses=True)  # `streams.backtest.fit` observes through one
class Backtest:
    """Feed raw lines in order; collect transitions through `sink`."""

    def __init__(
        self,
        model: Model,
        sink: TransitionSink | None = None,
        conversion_event: str | None = None,
        now_ms: Callable[[], float] | None = None,
        on_reject: Callable[[RejectedLine], None] | None = None,
        max_disorder_ms: int = DEFAULT_MAX_DISORDER_MS,
        received_by_ms: float | Literal["now"] | None = "now",
        switches: Sequence[ModelSwitch] = (),
        shadows: Sequence[ShadowStart] = (),
        shadow_sink: TransitionSink | None = None,
        backfill_from_ms: int | None = None,
    ) -> None:
        """`received_by_ms`: when the history was received (its export); an event without
        `receivedAt` timestamped past it (plus the skew tolerance) comes from a wrong clock and
        is rejected as the live worker rejects it. Default: the wall clock now; None: no check
        (for histories dated in the future, e.g. synthetic ones). `switches`: later model
        versions and the stream time each takes over at (raises `IncompatibleModel` for one
        that cannot follow its predecessor); one with other signals is backfilled from the
        first event, or from `backfill_from_ms` (its backfilled signals are partial until that
        instant plus their window). `shadows`: candidate models and the
        stream time each starts running beside the live one at; their transitions go to
        `shadow_sink` (raises `IncompatibleModel` for one that cannot shadow the model live
        then)."""
        self.model = model
        self.received_by_ms = time.time() * 1000 if received_by_ms == "now" else received_by_ms
        self._now_ms = now_ms
        self.scorer = self._scorer(model, 0)
        self.switches = sorted(switches, key=lambda sw: sw.at_ms)
        self._backfills: dict[int, _Backfill] = {}
        previous = model
        for sw in self.switches:
            changes = check_backfill(previous, sw.model)
            if changes:
                self._backfills[sw.model.version] = _Backfill(
                    self._scorer(sw.model, sw.at_ms),
                    Router(self.scorer.plan.user_traits),  # the same (`check_backfill`)
                    carry(previous, sw.model),
                    backfill_from_ms,
                    changes,
                    {},
                )
            previous = sw.model
        self.switched: list[ModelSwitch] = []  # the switches made so far
        self.backfilled: dict[int, _Backfill] = {}  # the backfills switched to, by version
        self.shadows = sorted(shadows, key=lambda sh: sh.at_ms)
        versions = [sh.model.version for sh in self.shadows]
        if len(set(versions)) < len(versions):
            raise IncompatibleModel("two shadow models of the same version: one per version")
        for sh in self.shadows:
            live = model
            for sw in self.switches:
                if sw.at_ms <= sh.at_ms:
                    live = sw.model
            check_shadow(live, sh.model)
        self.shadows_started: list[ShadowStart] = []
        self.shadow_sink = shadow_sink
        self.shadow_transitions: dict[int, int] = {}  # per shadow version
        # The first instant a switch or a shadow start is due at (none: never).
        self._next_change = self._due_at()
        self.router = Router(self.scorer.plan.user_traits)
        self.states: dict[str, AccountState] = {}
        self.timers = ExpiryIndex()
        self.watermark = _NONE
        self.max_disorder_ms = max_disorder_ms
        self.held: HoldBuffer[tuple[Event, int]] = HoldBuffer()
        self.latest = _NONE  # the latest event time read
        self.released = _NONE  # every event older than this has been applied
        self.sink = sink
        self.on_reject = on_reject
        self.summary = SummaryBuilder(conversion_event=conversion_event)
        # A shard's part (`streams.backtest.shards`): the accounts it owns (None: every one),
        # whether it reports what every shard sees alike, and where it is in the emission order.
        self.owns: Callable[[str], bool] | None = None
        self.shared_effects = True
        self.tick = 0  # blocks so far: a rejected line, an event's deliveries, an advance, ...
        self.sub: tuple[Any, ...] = ()  # the position inside the block

    # -- input ----------------------------------------------------------------------------
    def feed_line(self, raw: bytes, line_no: int = 0) -> None:
        self.summary.events_read += 1
        parsed = parse_event(raw, self.received_by_ms)
        if isinstance(parsed, Reject):
            self.tick += 1
            self.sub = ()
            self._reject(line_no, parsed)
            return
        if parsed.adjusted is not None:
            self.summary.adjusted[parsed.adjusted] += 1
        self.feed_event(parsed, line_no)

    def feed_event(self, ev: Event, line_no: int = 0) -> None:
        """Take one event of the input; it is applied once the order allows (see module)."""
        ts = ev.ts
        if ts < self.released:  # more out of order than max_disorder_ms: the late path
            self.summary.out_of_order += 1
            self.apply_event(ev, line_no)
            return
        self.held.push(order_key(ev), (ev, line_no))
        if ts > self.latest:
            self.latest = ts
            before = ts - self.max_disorder_ms
            if before > self.released:
                self.released = before
                for held, n in self.held.release(before):
                    self.apply_event(held, n)

    def apply_event(self, ev: Event, line_no: int = 0) -> None:
        """Route and apply one event now, whatever its order (`feed_event` orders them)."""
        if ev.ts >= self._next_change:
            self._switch_until(ev.ts)
        self.tick += 1
        deliveries, reject = self.router.route(ev)
        if reject is not None:
            self.sub = (-1,)
            self._reject(line_no, reject)
        owns = self.owns
        for i, (account, delivered) in enumerate(deliveries):
            if owns is None or owns(account):
                self.sub = (i,)
                self._apply(account, delivered, line_no)
        if self._backfills:
            self._backfill(ev)
        if ev.ts > self.watermark:
            self.advance_watermark(ev.ts)

    def _apply(self, account: str, ev: Event, line_no: int) -> None:
        outcome = self.scorer.apply(account, self.states.get(account), ev)
        if outcome.duplicate:
            self.summary.duplicates += 1
            return
        if outcome.reject is not None:
            self._reject(line_no, outcome.reject, applied=True)
            return
        state = outcome.state
        self.states[account] = state
        if outcome.late:
            self.summary.late_applied += 1
        self.summary.on_event(account, ev.ts, ev.event, ev.properties)
        if outcome.transitions:
            self._emit(outcome.transitions)
        if self.scorer.shadow_out:
            self._emit_shadow(self.scorer.take_shadow())
        self.timers.schedule(account, state.next_expiry)

    def _backfill(self, ev: Event) -> None:
        for bf in self._backfills.values():
            if bf.from_ms is not None and ev.ts < bf.from_ms:
                continue
            deliveries, _ = bf.router.route(ev)
            for account, delivered in deliveries:
                if self.owns is not None and not self.owns(account):
                    continue
                bf.states[account] = bf.scorer.absorb(bf.states.get(account), delivered)

    def advance_watermark(self, until: int) -> None:
        """Advance every account with an expiry due at or before `until`."""
        if until > self.watermark:
            self.watermark = until
        self.tick += 1
        if not self.timers.has_due(until):
            return
        for expiry, account in self.timers.pop_due_items(until):
            self.sub = (expiry, account)
            state = self.states[account]
            self._emit(self.scorer.advance(account, state, until))
            if self.scorer.shadow_out:
                self._emit_shadow(self.scorer.take_shadow())
            self.timers.schedule(account, state.next_expiry)

    def finish(self, until: int | None = None) -> None:
        """End of input: apply what is held, then advance to the last event time, or to
        `until` if later (making the switches due by then)."""
        for held, n in self.held.release_all():
            self.apply_event(held, n)
        self.released = self.latest
        end = self.watermark if until is None else max(until, self.watermark)
        self._switch_until(end)
        self.advance_watermark(end)

    # -- model versions -------------------------------------------------------------------
    def _scorer(self, model: Model, effective_from_ms: int) -> Scorer:
        if self._now_ms is None:
            return Scorer(model, effective_from_ms=effective_from_ms)
        return Scorer(model, self._now_ms, effective_from_ms=effective_from_ms)

    def _due_at(self) -> int:
        due = [x[0].at_ms for x in (self.switches, self.shadows) if x]
        return min(due) if due else _NEVER

    def _switch_until(self, ts: int) -> None:
        """Make every switch and shadow start due at or before `ts`, in time order (at the same
        instant, the switch first)."""
        while self._next_change <= ts:
            if self.switches and self.switches[0].at_ms == self._next_change:
                self._switch(self.switches.pop(0))
            else:
                self._start_shadow(self.shadows.pop(0))
            self._next_change = self._due_at()

    def _switch(self, sw: ModelSwitch) -> None:
        at = sw.at_ms
        self.advance_watermark(at)  # the expiries up to the switch, under the old model
        bf = self._backfills.pop(sw.model.version, None)
        if bf is not None:
            self._switch_backfilled(sw, bf)
            return
        old, new = self.scorer, self._scorer(sw.model, at)
        new.shadows = [s for s in old.shadows if s.model.version > sw.model.version]
        self.tick += 1
        for account in sorted(self.states):
            self.sub = (account,)
            state = self.states[account]
            self._emit(switch_account(old, new, account, state, at))
            if old.shadow_out:
                self._emit_shadow(old.take_shadow())
            self.timers.schedule(account, state.next_expiry)
        self.scorer = new
        self.switched.append(sw)

    def _switch_backfilled(self, sw: ModelSwitch, bf: _Backfill) -> None:
        """A switch over backfilled signals (`streams.scoring.backfill`). Shadows of the old
        signals end: they cannot read the new state."""
        at = sw.at_ms
        old, new = self.scorer, bf.scorer
        if bf.from_ms is not None:
            new.backfilled(bf.from_ms, partial_windows(sw.model, bf.carry))
        self.backfilled[sw.model.version] = bf
        self.tick += 1
        for account in sorted(self.states.keys() | bf.states.keys()):
            self.sub = (account,)
            state, transitions = switch_backfilled(
                old, new, bf.carry, account, self.states.get(account), bf.states.get(account), at
            )
            self.states[account] = state
            self._emit(transitions)
            if old.shadow_out:
                self._emit_shadow(old.take_shadow())
            self.timers.schedule(account, state.next_expiry)
        bf.states = {}
        self.scorer = new
        self.switched.append(sw)

    def _start_shadow(self, sh: ShadowStart) -> None:
        at = sh.at_ms
        self.advance_watermark(at)
        live, shadow = self.scorer, self._scorer(sh.model, at)
        self.shadow_transitions.setdefault(sh.model.version, 0)
        self.tick += 1
        for account in sorted(self.states):
            self.sub = (account,)
            state = self.states[account]
            transitions, started = start_shadow(live, shadow, account, state, at)
            self._emit(transitions)
            if live.shadow_out:
                self._emit_shadow(live.take_shadow())
            self._emit_shadow(started)
            self.timers.schedule(account, state.next_expiry)
        live.shadows.append(shadow)
        self.shadows_started.append(sh)

    # -- output ---------------------------------------------------------------------------
    def _emit(self, transitions: list[dict[str, Any]]) -> None:
        for t in transitions:
            self.summary.on_transition(t, _occurred_ms(t))
            if self.sink is not None:
                self.sink(t)

    def _emit_shadow(self, transitions: list[dict[str, Any]]) -> None:
        for t in transitions:
            version = t["model"]["version"]
            self.shadow_transitions[version] = self.shadow_transitions.get(version, 0) + 1
            if self.shadow_sink is not None:
                self.shadow_sink(t)

    def _reject(self, line_no: int, reject: Reject, applied: bool = False) -> None:
        """`applied`: refused by the account's scoring (a shard's own), not by parsing or
        routing (every shard sees those alike; only one reports them)."""
        if applied:
            self.summary.rejected_applied[reject.reason.value] += 1
        elif not self.shared_effects:
            return
        else:
            self.summary.rejected[reject.reason.value] += 1
        if self.on_reject is not None:
            self.on_reject(RejectedLine(line_no, reject.reason.value, reject.detail))


def _occurred_ms(t: dict[str, Any]) -> int:
    ms = iso_to_epoch_ms(t["occurred_at"])
    assert ms is not None
    return ms
