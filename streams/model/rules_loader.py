"""The `score:` rules of a model (`streams.model.loader` reads the rest): `when` rules and
graded `per` rules, with every refusal naming the line and field."""

from __future__ import annotations

from yaml.nodes import Node

from streams.model.nodes import (
    Ctx,
    Scope,
    did_you_mean,
    entries_of,
    expr_at,
    fmt,
    join,
    non_empty_str,
    number_at,
    unknown_key,
)
from streams.model.spec import PerRule, Rule, WhenRule

WHEN_RULE_KEYS = ("when", "points", "name")
PER_RULE_KEYS = ("per", "every", "points", "max", "name")
RULE_KEYS = ("when", "per", "every", "points", "max", "name")


# ---------------------------------------------------------------------------------------------
# Score rules


def _per_label(signal: str, every: float, points: float, cap: float | None) -> str:
    unit = "point" if points in (1, -1) else "points"
    label = f"{fmt(points)} {unit} per {fmt(every)} {signal}"
    return f"{label} (max {fmt(cap)})" if cap is not None else label


def parse_rule(ctx: Ctx, index: int, node: Node, scope: Scope, signals: set[str]) -> Rule | None:
    path = f"score[{index}]"
    before = len(ctx.issues)
    entries = entries_of(ctx, node, path, 'a rule like {when: "messages >= 5", points: 40}')
    if entries is None:
        return None
    options = {key: (knode, vnode) for key, knode, vnode in entries}
    is_when, is_per = "when" in options, "per" in options
    if is_when and is_per:
        ctx.add(options["per"][0], join(path, "per"), "a rule has 'when' or 'per', not both")
        return None
    if not is_when and not is_per:
        ctx.add(
            node,
            path,
            "a rule needs 'when' (points while a condition holds) or 'per' (graded points)",
        )
    allowed = WHEN_RULE_KEYS if is_when else PER_RULE_KEYS
    for key, knode, _ in entries:
        if key not in RULE_KEYS:
            unknown_key(ctx, key, knode, path, RULE_KEYS)
        elif key not in allowed and (is_when or is_per):
            ctx.add(knode, join(path, key), f"'{key}' only applies to 'per' rules")

    points = None
    if "points" in options:
        points = number_at(ctx, options["points"][1], join(path, "points"), "points")
    elif is_when or is_per:
        ctx.add(node, join(path, "points"), "'points' is required")

    label = None
    if "name" in options:
        label = non_empty_str(ctx, options["name"][1], join(path, "name"), "a rule name")

    line = node.start_mark.line + 1
    if is_when:
        when = expr_at(ctx, options["when"][1], join(path, "when"), scope)
        if len(ctx.issues) != before or when is None or points is None:
            return None
        return WhenRule(when=when, points=points, label=label or when.source, line=line)
    if not is_per:
        return None

    per_node = options["per"][1]
    per = non_empty_str(ctx, per_node, join(path, "per"), "a signal name")
    if per is not None and per not in signals:
        hint = did_you_mean(per, signals)
        ctx.add(per_node, join(path, "per"), f"unknown signal '{per}'{hint}")
    every = 1.0
    if "every" in options:
        every_node = options["every"][1]
        parsed = number_at(ctx, every_node, join(path, "every"), "every")
        if parsed is not None and parsed <= 0:
            ctx.add(
                every_node,
                join(path, "every"),
                f"every must be greater than 0, got {fmt(parsed)}",
            )
        elif parsed is not None:
            every = parsed
    cap = None
    if "max" in options:
        cap = number_at(ctx, options["max"][1], join(path, "max"), "max")
    if len(ctx.issues) != before or per is None or points is None:
        return None
    return PerRule(
        signal=per,
        every=every,
        points=points,
        max=cap,
        label=label or _per_label(per, every, points, cap),
        line=line,
    )
