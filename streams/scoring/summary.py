"""A human summary on every transition (`summary`): one deterministic sentence a rep can paste.

It names the account and its fit (the account traits the model reads: industry, size...),
says what changed, and why, with numbers and windows:

- qualified / disqualified: the score against the bar, then the usage behind the points (each
  scoring rule's signals as "47 × Message Sent in the last 30 days"), highest points first;
- segment entered / exited: the segment's own condition with the values it read (a segment is
  not entered because of score rules, so their reasons are not repeated).

Only what the transition already carries is used (signal values, reasons, the condition), so
the backtest and the worker write the same sentence.
"""

from __future__ import annotations

from typing import Any

from streams.model.spec import Model, Signal, SignalKind
from streams.scoring.transitions import DISQUALIFIED, QUALIFIED, SEGMENT_ENTERED

_MAX_USAGE = 3  # usage items named in a sentence (the strongest)


def _number(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.1f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


class Summarizer:
    """One per scorer: the phrases of its model's signals, built once."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.signals = {s.name: s for s in model.signals}
        self.fit = [s.name for s in model.signals if s.kind is SignalKind.TRAIT]

    def phrase(self, name: str, value: Any) -> str:
        """One signal with its value as a rep says it: "47 × Message Sent in the last 30 days"."""
        s = self.signals.get(name)
        if s is None:
            return f"{name} {_number(value)}"
        if s.kind is SignalKind.EVER:
            return f"{_events(s)} {'done' if value else 'not done yet'}"
        if s.kind is SignalKind.COUNT:
            return f"{_number(value)} × {_what(s)}{_window(s)}"
        if s.kind is SignalKind.ACTIVE_DAYS:
            days = "active day" if value == 1 else "active days"
            return f"{_number(value)} {days} with {_what(s)}{_window(s)}"
        if s.kind is SignalKind.TRAIT and not isinstance(value, int | float):
            return f"{s.name} {_number(value)}"  # industry software; 250 employees
        if s.kind in (SignalKind.DISTINCT_USERS, SignalKind.USERS_WITH_TRAIT) and value == 1:
            return f"1 {_what(s).replace('users', 'user', 1)}{_window(s)}"
        return f"{_number(value)} {_what(s)}{_window(s)}"

    def fit_text(self, signals: dict[str, Any]) -> str:
        parts = [self.phrase(n, signals[n]) for n in self.fit if signals.get(n) is not None]
        return f" ({', '.join(parts)})" if parts else ""

    def summary(
        self,
        account_id: str,
        kind: str,
        segment: str | None,
        score: int | float,
        previous_score: int | float,
        reasons: list[dict[str, Any]],
        condition: dict[str, Any],
        signals: dict[str, Any],
    ) -> str:
        who = f"{account_id}{self.fit_text(signals)}"
        why = self._condition(condition)
        if kind == QUALIFIED:
            return f"{who} became a PQL: {why}{self._usage(reasons)}."
        if kind == DISQUALIFIED:
            return f"{who} is no longer a PQL: {why}."
        verb = "entered" if kind == SEGMENT_ENTERED else "left"
        return f"{who} {verb} segment {segment}: {why}."

    def _usage(self, reasons: list[dict[str, Any]]) -> str:
        """The signals behind the points, strongest rules first, each named once."""
        ranked = sorted(reasons, key=lambda r: (-float(r["points"]), r["rule"]))
        seen: list[str] = []
        items: list[str] = []
        for r in ranked:
            for name, value in r["signals"].items():
                if name in seen or name in self.fit:
                    continue
                seen.append(name)
                items.append(self.phrase(name, value))
        if not items:
            return ""
        more = len(items) - _MAX_USAGE
        text = ", ".join(items[:_MAX_USAGE]) + (f" and {more} more" if more > 0 else "")
        return f", with {text}"

    def _condition(self, condition: dict[str, Any]) -> str:
        expr = str(condition["expr"]).split(": ", 1)[-1]
        values = condition.get("values") or {}
        read = [self.phrase(n, v) for n, v in values.items() if n in self.signals]
        derived = [f"{n} {_number(v)}" for n, v in values.items() if n not in self.signals]
        return f"{expr} ({'; '.join(read + derived)})" if read or derived else expr


def _events(s: Signal) -> str:
    if s.events is None:
        return "any event"
    return " or ".join(sorted(s.events))


def _what(s: Signal) -> str:
    where = f" where {s.where.source}" if s.where is not None else ""
    if s.kind is SignalKind.COUNT:
        return f"{_events(s)}{where}"
    if s.kind is SignalKind.SUM:
        return f"{s.property} of {_events(s)}{where}"
    if s.kind is SignalKind.DISTINCT_USERS:
        return f"users with {_events(s)}{where}"
    if s.kind is SignalKind.ACTIVE_DAYS:
        return f"{_events(s)}{where}"
    if s.kind is SignalKind.USERS_WITH_TRAIT:
        values = ", ".join(sorted(str(v) for v in s.values or ()))
        return f"users with {s.trait} in [{values}]"
    return s.name  # TRAIT: "250 employees" (a number before the name)


def _window(s: Signal) -> str:
    if s.window_ms is None:
        return ""
    if s.half_life_ms is not None:
        return (
            f" in the last {_duration(s.window_ms)}, with a half-life of "
            f"{_duration(s.half_life_ms)}"
        )
    return f" in the last {_duration(s.window_ms)}"


def _duration(ms: int) -> str:
    """A window as a rep reads it: 30 days, 12 hours, 90 minutes."""
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size and ms % size == 0:
            n = ms // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{ms / 1000:g} s"
