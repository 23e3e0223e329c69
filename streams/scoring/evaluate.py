"""Signal values -> score -> PQL status (with hysteresis) -> segment membership, and the reasons.

The decision (`decide`) runs on every evaluation and is kept lean; the explanation (`reasons`,
`condition`) is built only when a transition is actually emitted.

Incremental evaluation: `evaluate` makes the full decision and returns it as an `EvalCache` (the
values it read and produced, and each rule's points). After some signals changed, `reevaluate`
brings that cache up to date by recomputing only what reads them: the rules reading a changed
signal, the qualify condition when the score or a signal it reads changed (or the last evaluation
flipped the PQL status, which is an input of the hysteresis), and the segments reading anything
that changed (segments read only segments above them, so one pass in model order suffices). The
score is always re-summed over every rule's points in rule order, so it is the same number the
full evaluation computes. The full evaluation is the reference; the incremental one must give
the same decision (tests/unit/scoring/test_incremental.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.model.spec import Expr, Model, Rule, WhenRule

Number = int | float


def _num(x: float) -> Number:
    """Integral floats print as integers (a score of 120, not 120.0)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


PointsFn = Callable[[Mapping[str, Any]], Number]


def _points_fn(rule: Rule) -> PointsFn:
    """A rule's points as a function of the values, its constants bound: a when-rule's `points`
    while its condition holds, else 0; a per-rule's floor(value / every) * points, capped at
    `max`, and 0 for a missing or non-numeric (or boolean) value."""
    if isinstance(rule, WhenRule):
        when, points = rule.when.fn, rule.points

        def when_points(values: Mapping[str, Any]) -> Number:
            return points if when(values) else 0

        return when_points

    signal, every, per, cap = rule.signal, rule.every, rule.points, rule.max

    def per_points(values: Mapping[str, Any]) -> Number:
        v: Any = values.get(signal)
        t = type(v)
        # The common case, a count or a sum, is decided by the first two tests (a `bool | str`
        # in isinstance builds a union object per call).
        if (
            t is not int
            and t is not float
            and (v is None or isinstance(v, (bool, str)) or not isinstance(v, (int, float)))
        ):
            return 0
        pts = math.floor(v / every) * per
        if cap is not None:
            pts = min(pts, cap) if per >= 0 else max(pts, cap)
        return pts

    return per_points


def _total(points: Iterable[Number]) -> Number:
    """The score: the rules' points added in rule order (not `sum`, whose float rounding may
    differ), integral floats as integers."""
    total: Number = 0
    for pts in points:
        total += pts
    return _num(total)


def _same(a: object, b: object) -> bool:
    """Equal and of the same type (a score of 1 is not a score of 1.0 to the encoder)."""
    return type(a) is type(b) and a == b


@dataclass(frozen=True, slots=True)
class Decision:
    score: Number
    pql: bool
    segments: tuple[str, ...]


class EvalCache:
    """An account's last decision, kept in memory for incremental evaluation; never serialised.

    `values` is the full mapping the decision read and produced (signals, `score`, `pql`, each
    segment's membership), `points` each rule's points, `was_pql` the PQL status the qualify
    condition was last evaluated from, `segments` the list object stored in the account state
    (so a state changed behind the scorer's back is noticed), `owner` the evaluator that built it.
    """

    __slots__ = ("owner", "values", "points", "score", "was_pql", "pql", "members", "segments")

    def __init__(
        self,
        owner: Evaluator,
        values: dict[str, Any],
        points: list[Number],
        score: Number,
        was_pql: bool,
        pql: bool,
        members: tuple[str, ...],
    ) -> None:
        self.owner = owner
        self.values = values
        self.points = points
        self.score = score
        self.was_pql = was_pql
        self.pql = pql
        self.members = members
        self.segments: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Readers:
    """What reads one name (a signal, `score`, `pql` or a segment): the indexes of the rules
    and segments reading it, and whether the qualify condition does."""

    rules: tuple[int, ...] = ()
    qualify: bool = False
    segments: tuple[int, ...] = ()


class Evaluator:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.rules = model.score
        self.points_fns = [_points_fn(rule) for rule in self.rules]
        self.enter = model.qualify.when
        self.exit = model.qualify.exit
        self.segments = model.segments
        readers, self.incremental = _dependencies(model)
        nobody = Readers()
        # By signal index (model order, as `SignalPlan`), then for score, pql and each segment.
        self.signal_readers = [readers.get(s.name, nobody) for s in model.signals]
        self.score_segments = readers.get("score", nobody).segments
        self.pql_segments = readers.get("pql", nobody).segments
        self.segment_readers = [readers.get(seg.name, nobody).segments for seg in self.segments]
        # Per rule, what `reasons` needs: the rule, its points function, the names it reads.
        self._explain = [
            (
                rule,
                fn,
                tuple(sorted(rule.when.names)) if isinstance(rule, WhenRule) else (rule.signal,),
            )
            for rule, fn in zip(self.rules, self.points_fns, strict=True)
        ]
        # Per signal index, what `reevaluate` needs: ((rule index, its points function), ...),
        # whether the qualify condition reads it, the segments reading it.
        self._signal_deps = [
            (tuple((k, self.points_fns[k]) for k in r.rules), r.qualify, r.segments)
            for r in self.signal_readers
        ]

    def decide(self, values: dict[str, Any], was_pql: bool) -> Decision:
        """Mutates `values`, adding `score`, `pql` and each segment's membership."""
        c = self.evaluate(values, was_pql)
        return Decision(c.score, c.pql, c.members)

    def evaluate(self, values: dict[str, Any], was_pql: bool) -> EvalCache:
        """The full decision, as a cache for `reevaluate`. Mutates (and keeps) `values`."""
        points = [fn(values) for fn in self.points_fns]
        score = _total(points)
        values["score"] = score
        pql = self._qualify(values, was_pql)
        values["pql"] = pql
        members = []
        for seg in self.segments:
            inside = bool(seg.expr.fn(values))
            values[seg.name] = inside
            if inside:
                members.append(seg.name)
        return EvalCache(self, values, points, score, was_pql, pql, tuple(members))

    def reevaluate(self, cache: EvalCache, changed: Iterable[int], was_pql: bool) -> bool:
        """Bring `cache` up to date after the signals at indexes `changed` changed
        (`cache.values` already holds their new values) and with `was_pql` the current PQL
        status. True if the PQL status or the segment membership changed (the score may change
        either way: read `cache.score`)."""
        values = cache.values
        points = cache.points
        deps = self._signal_deps
        requalify = cache.was_pql is not was_pql  # the last evaluation flipped the status
        rescore = False
        dirty: set[int] | None = None  # segments to re-evaluate
        for i in changed:
            rules, qualify, readers = deps[i]
            for k, fn in rules:
                pts = fn(values)
                old = points[k]
                if pts != old or type(pts) is not type(old):  # not _same(), inlined
                    points[k] = pts
                    rescore = True
            if qualify:
                requalify = True
            if readers:
                dirty = set(readers) if dirty is None else dirty.union(readers)
        if rescore:
            score = _total(points)
            if not _same(score, cache.score):
                cache.score = score
                values["score"] = score
                requalify = True
                if self.score_segments:
                    dirty = (dirty or set()).union(self.score_segments)
        flipped = False
        if requalify:
            pql = self._qualify(values, was_pql)
            cache.was_pql = was_pql
            if pql is not cache.pql:
                flipped = True
                cache.pql = pql
                values["pql"] = pql
                if self.pql_segments:
                    dirty = (dirty or set()).union(self.pql_segments)
        if not dirty:
            return flipped
        moved = False
        segments = self.segments
        for j in range(min(dirty), len(segments)):
            if j not in dirty:
                continue
            name = segments[j].name
            inside = bool(segments[j].expr.fn(values))
            if inside is not values[name]:
                values[name] = inside
                moved = True
                dirty.update(self.segment_readers[j])  # only segments below j read it
        if moved:
            cache.members = tuple(seg.name for seg in segments if values[seg.name])
        return flipped or moved

    def _qualify(self, values: dict[str, Any], was_pql: bool) -> bool:
        if was_pql:
            if self.exit is not None:
                return not self.exit.fn(values)
            return bool(self.enter.fn(values))
        return bool(self.enter.fn(values))

    def reasons(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rule that contributed points, with the values it read."""
        out: list[dict[str, Any]] = []
        for rule, fn, names in self._explain:
            pts = fn(values)
            if not pts:
                continue
            read = {n: values.get(n) for n in names}
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


def _dependencies(model: Model) -> tuple[dict[str, Readers], bool]:
    """Name -> what reads it; and whether incremental evaluation is sound for `model`.

    It is sound when every expression reads only what the full evaluation has already computed
    when it runs (the loader enforces this: rules read signals, qualify signals and `score`,
    segments signals, `score`, `pql` and the segments above them). A model built by hand that
    breaks it would read a name the incremental cache holds from a previous evaluation while the
    full one sees it missing; such a model is always evaluated in full.
    """
    signals = {s.name for s in model.signals}
    segment_names = [seg.name for seg in model.segments]
    derived = {"score", "pql", *segment_names}
    rules: dict[str, list[int]] = {}
    qualify: set[str] = set()
    segments: dict[str, list[int]] = {}
    sound = len(signals) == len(model.signals) and not signals & derived
    sound = sound and len(set(segment_names)) == len(segment_names)
    for i, rule in enumerate(model.score):
        names: Iterable[str] = rule.when.names if isinstance(rule, WhenRule) else (rule.signal,)
        for n in names:
            rules.setdefault(n, []).append(i)
            sound = sound and n not in derived
    for expr in (model.qualify.when, model.qualify.exit):
        if expr is not None:
            qualify.update(expr.names)
    sound = sound and not qualify & (derived - {"score"})
    for j, seg in enumerate(model.segments):
        for n in seg.expr.names:
            segments.setdefault(n, []).append(j)
            sound = sound and n not in segment_names[j:]  # not itself nor a segment below
    # A name that is no signal, score, pql or segment is missing from both evaluations alike.
    readers = {
        n: Readers(tuple(rules.get(n, ())), n in qualify, tuple(segments.get(n, ())))
        for n in set(rules) | qualify | set(segments)
    }
    return readers, sound
