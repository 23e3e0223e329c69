"""`pql model diff OLD NEW [EVENTS]`: what changed in a model's definition and, over history, what
that change does: which accounts would enter or leave, PQL rate and lift before and after.

The definition diff also says which kind of change it is (README "Changing your model"): the
same version; rules only (applies live from kept state); or signals (needs their history first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.backtest.replay import history_lines
from streams.backtest.runner import Backtest
from streams.model.spec import Model, Rule, WhenRule
from streams.scoring.backfill import check_backfill
from streams.scoring.switch import IncompatibleModel, signal_changes


def _rule_key(rule: Rule) -> tuple[str, ...]:
    if isinstance(rule, WhenRule):
        return ("when", rule.when.source)
    return ("per", rule.signal, repr(rule.every))


def _rule_text(rule: Rule) -> str:
    if isinstance(rule, WhenRule):
        return f"{rule.points:g} points when {rule.when.source}"
    cap = f", max {rule.max:g}" if rule.max is not None else ""
    return f"{rule.points:g} points per {rule.every:g} {rule.signal}{cap}"


def _named(rule: Rule) -> str:
    return rule.label if rule.label else _rule_text(rule)


def definition_changes(old: Model, new: Model) -> list[str]:
    """Every difference between the two definitions, one line each, in model order."""
    out: list[str] = []
    if old.name != new.name:
        out.append(f"name: {old.name} -> {new.name}")
    if old.version != new.version:
        out.append(f"version: {old.version} -> {new.version}")
    out += signal_changes(old, new)
    before = {_rule_key(r): r for r in old.score}
    after = {_rule_key(r): r for r in new.score}
    for key, rule in after.items():
        was = before.get(key)
        if was is None:
            out.append(f"new score rule: {_rule_text(rule)}")
        elif (was.points, getattr(was, "max", None)) != (rule.points, getattr(rule, "max", None)):
            out.append(f"score rule {_named(rule)!r}: {_rule_text(was)} -> {_rule_text(rule)}")
    out += [f"score rule removed: {_rule_text(r)}" for k, r in before.items() if k not in after]
    if old.qualify.when.source != new.qualify.when.source:
        out.append(f"qualify.when: {old.qualify.when.source} -> {new.qualify.when.source}")
    old_exit = old.qualify.exit.source if old.qualify.exit else "(not when)"
    new_exit = new.qualify.exit.source if new.qualify.exit else "(not when)"
    if old_exit != new_exit:
        out.append(f"qualify.exit: {old_exit} -> {new_exit}")
    old_segments = {s.name: s.expr.source for s in old.segments}
    new_segments = {s.name: s.expr.source for s in new.segments}
    for name, expr in new_segments.items():
        if name not in old_segments:
            out.append(f"new segment {name!r}: {expr}")
        elif old_segments[name] != expr:
            out.append(f"segment {name!r}: {old_segments[name]} -> {expr}")
    out += [f"segment {name!r} removed" for name in old_segments if name not in new_segments]
    old_pb = old.playbook.source if old.playbook else None
    new_pb = new.playbook.source if new.playbook else None
    if old_pb != new_pb:
        out.append(
            "playbook added"
            if old_pb is None
            else "playbook removed"
            if new_pb is None
            else "playbook changed (route, owner, contacts or cooldown)"
        )
    return out


def change_kind(old: Model, new: Model) -> str:
    """How the change can be made live (the three cases of README "Changing your model")."""
    if old.fingerprint and old.fingerprint == new.fingerprint:
        return "none: the same definition"
    try:
        changes = check_backfill(old, new)
    except IncompatibleModel as exc:
        return f"refused: {exc}"
    if changes:
        return (
            "signals: applies live after a backfill: each worker first builds the changed "
            "signals from the input topic's retained records (partial where the retention is "
            "shorter than their window; --backfill-seed for older history)"
        )
    return "rules only: applies live from kept state (SIGHUP or a changed model file)"


@dataclass
class SideSummary:
    summary: dict[str, Any]
    ever: set[str]  # accounts that became a PQL at some point
    at_end: set[str]  # PQLs at the end of the history
    segments_at_end: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class HistoryDiff:
    old: SideSummary
    new: SideSummary

    @property
    def enter(self) -> list[str]:
        """PQLs at the end under the new model, not under the old."""
        return sorted(self.new.at_end - self.old.at_end)

    @property
    def leave(self) -> list[str]:
        return sorted(self.old.at_end - self.new.at_end)

    @property
    def ever_enter(self) -> list[str]:
        return sorted(self.new.ever - self.old.ever)

    @property
    def ever_leave(self) -> list[str]:
        return sorted(self.old.ever - self.new.ever)


def compare_on_history(
    old: Model,
    new: Model,
    paths: Iterable[str | Path],
    conversion_event: str | None = None,
    received_by_ms: float | None = None,
    until: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> HistoryDiff:
    """Both models over the same history, each from the start (the backtest, twice in one
    read of the files)."""
    runs = [
        Backtest(m, conversion_event=conversion_event, received_by_ms=received_by_ms)
        for m in (old, new)
    ]
    for n, line in history_lines(paths, progress):
        for bt in runs:
            bt.feed_line(line, n)
    sides = []
    for bt in runs:
        bt.finish(until)
        segments: dict[str, set[str]] = {s.name: set() for s in bt.model.segments}
        for account, state in bt.states.items():
            for name in state.segments:
                segments.setdefault(name, set()).add(account)
        sides.append(
            SideSummary(
                summary=bt.summary.build(),
                ever=set(bt.summary.first_pql),
                at_end=set(bt.summary.pql_now),
                segments_at_end=segments,
            )
        )
    return HistoryDiff(sides[0], sides[1])
