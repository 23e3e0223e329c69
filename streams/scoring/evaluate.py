"""Signal values -> score -> PQL status (with hysteresis) -> segment membership, and the reasons.

The decision (`decide`) runs on every evaluation and is kept lean; the explanation (`reasons`,
`condition`) is built only when a transition is actually emitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streams.model.spec import Expr, Model, Rule, WhenRule

Number = int | float


def _num(x: float) -> Number:
    """Integral floats print as integers (a score of 120, not 120.0)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _rule_points(rule: Rule, values: dict[str, Any]) -> Number:
    if isinstance(rule, WhenRule):
        return rule.points if rule.when.fn(values) else 0
    v = values.get(rule.signal)
    if v is None or isinstance(v, bool | str) or not isinstance(v, int | float):
        return 0
    pts = math.floor(v / rule.every) * rule.points
    if rule.max is not None:
        pts = min(pts, rule.max) if rule.points >= 0 else max(pts, rule.max)
    return pts


@dataclass(frozen=True, slots=True)
class Decision:
    score: Number
    pql: bool
    segments: tuple[str, ...]


class Evaluator:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.rules = model.score
        self.enter = model.qualify.when
        self.exit = model.qualify.exit
        self.segments = model.segments

    def decide(self, values: dict[str, Any], was_pql: bool) -> Decision:
        """Mutates `values`, adding `score`, `pql` and each segment's membership."""
        total: float = 0
        for rule in self.rules:
            total += _rule_points(rule, values)
        score = _num(total)
        values["score"] = score
        if was_pql:
            pql = not self.exit.fn(values) if self.exit is not None else bool(self.enter.fn(values))
        else:
            pql = bool(self.enter.fn(values))
        values["pql"] = pql
        members = []
        for seg in self.segments:
            inside = bool(seg.expr.fn(values))
            values[seg.name] = inside
            if inside:
                members.append(seg.name)
        return Decision(score, pql, tuple(members))

    def reasons(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rule that contributed points, with the values it read."""
        out: list[dict[str, Any]] = []
        for rule in self.rules:
            pts = _rule_points(rule, values)
            if not pts:
                continue
            if isinstance(rule, WhenRule):
                read = {n: values.get(n) for n in sorted(rule.when.names)}
            else:
                read = {rule.signal: values.get(rule.signal)}
            out.append({"rule": rule.label, "points": _num(pts), "signals": read})
        return out

    def condition(self, kind: str, segment: str | None, values: dict[str, Any]) -> dict[str, Any]:
        """The condition whose truth changed, with the values it read."""
        expr: Expr
        text: str
        if kind == "qualified":
            expr, text = self.enter, f"qualify.when: {self.enter.source}"
        elif kind == "disqualified":
            if self.exit is not None:
                expr, text = self.exit, f"qualify.exit: {self.exit.source}"
            else:
                expr, text = self.enter, f"not qualify.when: {self.enter.source}"
        else:
            seg = next(s for s in self.segments if s.name == segment)
            expr, text = seg.expr, f"segments.{seg.name}: {seg.expr.source}"
        return {"expr": text, "values": {n: values.get(n) for n in sorted(expr.names)}}
