"""Signals: how one event changes a signal's state, what a signal's value is, how time expires it.

Each model signal compiles to one `SignalOp` chosen by kind, holding its constants, so the
per-event path is a dict lookup (event name -> ops) and a few attribute reads — no branching on
the model's text per event.

What "any" matches: track events (including page/screen, which the parser maps to track).
`identify` and `group` calls say who someone is, not that they used the product, so they never
count as activity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from streams.events.types import Event, EventType
from streams.model.spec import Model, Signal, SignalKind, Value
from streams.state.account import MAX_KEYS_PER_SIGNAL, NEVER, AccountState, SignalState
from streams.state.windows import expired_keys, expiry_of

DAY_MS = 86_400_000

# One signal as `SignalPlan.apply` runs it: (index, `where` or None, bound `update`).
_Step = tuple[
    int, Callable[[Any], Any] | None, Callable[[SignalState, Event, AccountState], int | None]
]


class SignalOp:
    """One compiled signal. Subclasses implement the kinds."""

    __slots__ = ("spec", "index", "where", "window", "bucket", "span")

    def __init__(self, spec: Signal, index: int) -> None:
        self.spec = spec
        self.index = index
        self.where = spec.where.fn if spec.where is not None else None
        self.window = spec.window_ms
        self.bucket = spec.bucket_ms
        # expiry_of(i) = (i + 1) * bucket + window = i * bucket + span (exact: all ints).
        self.span = (self.bucket or 0) + (self.window or 0)

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        """Apply `ev`; None if the value did not change, else the expiry instant it added
        (NEVER when nothing will expire)."""
        raise NotImplementedError

    def value(self, ss: SignalState, state: AccountState) -> Value:
        raise NotImplementedError

    def drop(self, ss: SignalState, at: int) -> bool:
        """Expire what left the window by `at`; True if the value changed."""
        return False

    def earliest(self, ss: SignalState, at: int) -> int:
        """The next instant after `at` this signal's value can change by time alone."""
        return NEVER

    def _expiry(self, idx: int) -> int:
        assert self.bucket is not None and self.window is not None
        return expiry_of(idx, self.bucket, self.window)


class AmountOp(SignalOp):
    """count and sum: amount per event (1, or a numeric property), per bucket when windowed."""

    __slots__ = ("prop",)

    def __init__(self, spec: Signal, index: int) -> None:
        super().__init__(spec, index)
        self.prop = spec.property if spec.kind is SignalKind.SUM else None

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        if self.prop is None:
            amount: int | float = 1
        else:
            raw = ev.properties.get(self.prop)
            # bool is an int in Python; a `true` size is not a size.
            if raw is None or isinstance(raw, bool) or not isinstance(raw, (int, float)):
                return None
            if not math.isfinite(raw) or raw == 0:
                return None
            amount = raw
        if self.window is None:
            ss.total += amount
            return NEVER
        bucket: int = self.bucket  # type: ignore[assignment]
        idx = ev.ts // bucket
        exp = idx * bucket + self.span  # expiry_of(idx, bucket, window)
        if exp <= state.clock:  # a late event whose bucket already left the window
            return None
        b = ss.buckets
        b[idx] = b.get(idx, 0) + amount
        ss.total += amount
        return exp

    def value(self, ss: SignalState, state: AccountState) -> Value:
        return ss.total

    def drop(self, ss: SignalState, at: int) -> bool:
        if self.window is None or not ss.buckets:
            return False
        gone = expired_keys(ss.buckets, self.bucket, self.window, at)  # type: ignore[arg-type]
        if not gone:
            return False
        for k in gone:
            del ss.buckets[k]
        vals = ss.buckets.values()
        # Recomputed, not decremented: float sums never drift, whatever the arrival order.
        ss.total = sum(vals) if all(type(v) is int for v in vals) else math.fsum(vals)
        return True

    def earliest(self, ss: SignalState, at: int) -> int:
        if self.window is None or not ss.buckets:
            return NEVER
        return self._expiry(min(ss.buckets))


class DecayedAmountOp(AmountOp):
    """A count or sum with a `half_life`: each bucket's amount weighs 0.5 ** (age / half-life),
    its age counted in whole buckets from the bucket of the account's clock (the instant it is
    evaluated at), so the value changes only at bucket boundaries, which are scheduled as
    expiries while the window holds anything. The sum is `math.fsum` (correctly rounded, so
    independent of the buckets' order) rounded to 3 decimals: the same value whatever order
    the events came in, in the worker and the backtest."""

    __slots__ = ("half_life", "weights")

    def __init__(self, spec: Signal, index: int) -> None:
        super().__init__(spec, index)
        self.half_life: int = spec.half_life_ms  # type: ignore[assignment]
        bucket: int = self.bucket  # type: ignore[assignment]
        # The weight of each age a bucket inside the window can have (ages 0 .. window/bucket).
        scale = bucket / self.half_life
        ages = (self.window or 0) // bucket + 2
        self.weights = tuple(0.5 ** (age * scale) for age in range(ages))

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        exp = super().update(ss, ev, state)
        if exp is None:
            return None
        bucket: int = self.bucket  # type: ignore[assignment]
        return min(exp, (max(ev.ts, state.clock) // bucket + 1) * bucket)

    def value(self, ss: SignalState, state: AccountState) -> Value:
        if not ss.buckets:
            return 0.0
        bucket: int = self.bucket  # type: ignore[assignment]
        now = state.clock // bucket
        weights = self.weights
        last = len(weights) - 1
        weighted = math.fsum(
            amount * weights[min(max(now - idx, 0), last)] for idx, amount in ss.buckets.items()
        )
        return round(weighted, 3)

    def drop(self, ss: SignalState, at: int) -> bool:
        held = bool(ss.buckets)
        super().drop(ss, at)
        return held  # time moved: every bucket's weight may have

    def earliest(self, ss: SignalState, at: int) -> int:
        if not ss.buckets:
            return NEVER
        bucket: int = self.bucket  # type: ignore[assignment]
        return min(self._expiry(min(ss.buckets)), (at // bucket + 1) * bucket)


class EverOp(SignalOp):
    __slots__ = ()

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        if ss.total:
            return None
        ss.total = 1
        return NEVER

    def value(self, ss: SignalState, state: AccountState) -> Value:
        return 1 if ss.total else 0


class ActiveDaysOp(SignalOp):
    """Distinct UTC days with a matching event; one bucket per day."""

    __slots__ = ()

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        day = ev.ts // DAY_MS
        if day in ss.buckets:  # (whether or not its bucket expired: no change either way)
            return None
        if self.window is not None:
            exp = self._expiry(day)
            if exp <= state.clock:
                return None
        else:
            exp = NEVER
        ss.buckets[day] = 1
        return exp

    def value(self, ss: SignalState, state: AccountState) -> Value:
        return len(ss.buckets)

    def drop(self, ss: SignalState, at: int) -> bool:
        if self.window is None or not ss.buckets:
            return False
        gone = expired_keys(ss.buckets, DAY_MS, self.window, at)
        for k in gone:
            del ss.buckets[k]
        return bool(gone)

    def earliest(self, ss: SignalState, at: int) -> int:
        if self.window is None or not ss.buckets:
            return NEVER
        return self._expiry(min(ss.buckets))


class DistinctUsersOp(SignalOp):
    """Distinct users with a matching event: user -> last bucket they were seen in."""

    __slots__ = ()

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        user = ev.user_id
        if user is None:
            return None
        keys = ss.keys
        if self.window is None:
            if user in keys or len(keys) >= MAX_KEYS_PER_SIGNAL:
                return None
            keys[user] = 0
            return NEVER
        bucket: int = self.bucket  # type: ignore[assignment]
        idx = ev.ts // bucket
        prev = keys.get(user)
        if prev is not None and idx <= prev:
            return None  # (whether or not its bucket expired: no change either way)
        exp = idx * bucket + self.span  # expiry_of(idx, bucket, window)
        if exp <= state.clock:
            return None
        if prev is not None:
            keys[user] = idx  # seen again later: stays longer, same value now
            return None
        if len(keys) >= MAX_KEYS_PER_SIGNAL:
            return None
        keys[user] = idx
        return exp

    def value(self, ss: SignalState, state: AccountState) -> Value:
        return len(ss.keys)

    def drop(self, ss: SignalState, at: int) -> bool:
        if self.window is None or not ss.keys:
            return False
        gone = expired_keys(ss.keys, self.bucket, self.window, at)  # type: ignore[arg-type]
        for k in gone:
            del ss.keys[k]
        return bool(gone)

    def earliest(self, ss: SignalState, at: int) -> int:
        if self.window is None or not ss.keys:
            return NEVER
        return self._expiry(min(ss.keys.values()))


class TraitOp(SignalOp):
    """Latest account trait, from group calls (the latest by event time wins)."""

    __slots__ = ()

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        # Applied once per group event by `SignalPlan.apply_traits`, not per signal.
        return None

    def value(self, ss: SignalState, state: AccountState) -> Value:
        v = state.traits.get(self.spec.trait)  # type: ignore[arg-type]
        return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


class UsersWithTraitOp(SignalOp):
    """Users of the account whose latest trait value is accepted (`in:`; any non-null if absent)."""

    __slots__ = ("trait", "accepted")

    def __init__(self, spec: Signal, index: int) -> None:
        super().__init__(spec, index)
        self.trait = spec.trait
        self.accepted = spec.values

    def update(self, ss: SignalState, ev: Event, state: AccountState) -> int | None:
        traits = ev.user_traits
        if traits is None:
            traits = ev.traits if ev.type is EventType.IDENTIFY else None
        if not traits or self.trait not in traits or ev.user_id is None:
            return None
        v = traits[self.trait]
        match = v is not None if self.accepted is None else _hashable(v) in self.accepted
        user = ev.user_id
        if match:
            if user in ss.keys or len(ss.keys) >= MAX_KEYS_PER_SIGNAL:
                return None
            ss.keys[user] = 1
            return NEVER
        if ss.keys.pop(user, None) is None:
            return None
        return NEVER

    def value(self, ss: SignalState, state: AccountState) -> Value:
        return len(ss.keys)


def _hashable(v: object) -> object:
    return v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)


_OPS: dict[SignalKind, type[SignalOp]] = {
    SignalKind.COUNT: AmountOp,
    SignalKind.SUM: AmountOp,
    SignalKind.EVER: EverOp,
    SignalKind.ACTIVE_DAYS: ActiveDaysOp,
    SignalKind.DISTINCT_USERS: DistinctUsersOp,
    SignalKind.TRAIT: TraitOp,
    SignalKind.USERS_WITH_TRAIT: UsersWithTraitOp,
}
_EVENT_KINDS = {
    SignalKind.COUNT,
    SignalKind.SUM,
    SignalKind.EVER,
    SignalKind.ACTIVE_DAYS,
    SignalKind.DISTINCT_USERS,
}


class SignalPlan:
    """All signals of a model, indexed by what can change them."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.ops: list[SignalOp] = [
            (DecayedAmountOp if s.half_life_ms else _OPS[s.kind])(s, i)
            for i, s in enumerate(model.signals)
        ]
        self.names: list[str] = [s.name for s in model.signals]
        self.by_event: dict[str, list[SignalOp]] = {}
        self.any_event: list[SignalOp] = []
        for op in self.ops:
            if op.spec.kind not in _EVENT_KINDS:
                continue
            if op.spec.events is None:
                self.any_event.append(op)
            else:
                for name in op.spec.events:
                    self.by_event.setdefault(name, []).append(op)
        # Pre-merge so the per-event lookup is one dict.get.
        for ops in self.by_event.values():
            ops.extend(self.any_event)
            ops.sort(key=lambda o: o.index)
        self.user_trait_ops = [o for o in self.ops if isinstance(o, UsersWithTraitOp)]
        # Sorted, not a set: state.traits' order (so its bytes) must not depend on the hash seed.
        self.account_traits: tuple[str, ...] = tuple(
            sorted(s.trait for s in model.signals if s.kind is SignalKind.TRAIT and s.trait)
        )
        self.user_traits: frozenset[str] = frozenset(
            s.trait for s in model.signals if s.kind is SignalKind.USERS_WITH_TRAIT and s.trait
        )
        self.windowed = [o for o in self.ops if o.window is not None]
        # Account trait -> the TRAIT signals reading it (a group call changes only those).
        self.trait_signals: dict[str, list[int]] = {}
        for op in self.ops:
            if op.spec.kind is SignalKind.TRAIT and op.spec.trait:
                self.trait_signals.setdefault(op.spec.trait, []).append(op.index)
        # What `apply` runs, unpacked once: (signal index, `where` or None, bound `update`).
        self._track: dict[str, tuple[_Step, ...]] = {
            name: tuple((op.index, op.where, op.update) for op in ops)
            for name, ops in self.by_event.items()
        }
        self._track_any: tuple[_Step, ...] = tuple(
            (op.index, op.where, op.update) for op in self.any_event
        )
        self._user_trait_steps = tuple((op.index, op.update) for op in self.user_trait_ops)

    def new_signal_states(self) -> list[SignalState]:
        return [SignalState() for _ in self.ops]

    def apply(self, state: AccountState, ev: Event) -> list[int]:
        """Apply one event to the account's signals; the indexes of the signals whose value
        changed (empty if none did)."""
        changed: list[int] = []
        sigs = state.signals
        etype = ev.type
        if etype is _TRACK:
            props = ev.properties
            for i, where, update in self._track.get(ev.event, self._track_any):  # type: ignore[arg-type]
                if where is not None and not where(props):
                    continue
                exp = update(sigs[i], ev, state)
                if exp is not None:
                    changed.append(i)
                    if exp < state.next_expiry:
                        state.next_expiry = exp
            return changed
        if etype is _GROUP and self.account_traits:
            self._apply_account_traits(state, ev, changed)
        for i, update in self._user_trait_steps:
            if update(sigs[i], ev, state) is not None:
                changed.append(i)
        return changed

    def _apply_account_traits(self, state: AccountState, ev: Event, changed: list[int]) -> None:
        """Record the group call's traits; append the TRAIT signals whose value changed."""
        if ev.ts < state.traits_ts:
            return  # an older group call never overrides newer traits
        state.traits_ts = ev.ts
        for name in self.account_traits:
            if name in ev.traits:
                v = ev.traits[name]
                if state.traits.get(name, _MISSING) != v:
                    state.traits[name] = v
                    changed.extend(self.trait_signals[name])

    def expire(self, state: AccountState, at: int) -> list[int]:
        """Drop everything that left its window by `at`; recompute the next expiry. The indexes
        of the signals whose value changed."""
        changed: list[int] = []
        sigs = state.signals
        for op in self.windowed:
            if op.drop(sigs[op.index], at):
                changed.append(op.index)
        state.next_expiry = min(
            (op.earliest(sigs[op.index], at) for op in self.windowed), default=NEVER
        )
        return changed

    def values(self, state: AccountState) -> dict[str, Value]:
        sigs = state.signals
        return {op.spec.name: op.value(sigs[op.index], state) for op in self.ops}


_MISSING = object()
_TRACK = EventType.TRACK
_GROUP = EventType.GROUP
