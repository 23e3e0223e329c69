"""The `signals:` section of a model (`streams.model.loader` reads the rest): each signal's
kind, events, `where`, window and bucket, property, trait and values, and half-life, with every
refusal naming the line and field."""

from __future__ import annotations

import re

from yaml.nodes import Node, ScalarNode, SequenceNode

from streams.model.durations import DAY_MS, default_bucket_ms, format_duration
from streams.model.expr import KEYWORDS
from streams.model.nodes import (
    Ctx,
    duration_at,
    entries_of,
    expr_at,
    is_number,
    join,
    non_empty_str,
    unknown_key,
)
from streams.model.spec import Signal, SignalKind, Value

KIND_KEYS = tuple(kind.value for kind in SignalKind)
SIGNAL_OPTION_KEYS = ("where", "window", "bucket", "property", "in", "half_life", "description")
SIGNAL_KEYS = KIND_KEYS + SIGNAL_OPTION_KEYS

# Names an expression reads that are not signals; a signal or segment may not take them.
RESERVED_NAMES = KEYWORDS | {"score", "pql"}

_EVENT_KINDS = {
    SignalKind.COUNT,
    SignalKind.SUM,
    SignalKind.DISTINCT_USERS,
    SignalKind.ACTIVE_DAYS,
    SignalKind.EVER,
}
_ALLOWED_OPTIONS: dict[SignalKind, frozenset[str]] = {
    SignalKind.COUNT: frozenset({"where", "window", "bucket", "half_life", "description"}),
    SignalKind.SUM: frozenset(
        {"where", "window", "bucket", "property", "half_life", "description"}
    ),
    SignalKind.DISTINCT_USERS: frozenset({"where", "window", "bucket", "description"}),
    SignalKind.ACTIVE_DAYS: frozenset({"where", "window", "description"}),
    SignalKind.EVER: frozenset({"where", "description"}),
    SignalKind.TRAIT: frozenset({"description"}),
    SignalKind.USERS_WITH_TRAIT: frozenset({"in", "description"}),
}
_WHY_NOT: dict[tuple[SignalKind | None, str], str] = {
    (SignalKind.EVER, "window"): "'window' is not allowed on ever signals: they never expire",
    (SignalKind.TRAIT, "window"): "'window' is not allowed on trait signals: they hold the "
    "latest value",
    (SignalKind.USERS_WITH_TRAIT, "window"): "'window' is not allowed on users_with_trait "
    "signals: they count users by their latest trait",
    (SignalKind.ACTIVE_DAYS, "bucket"): "'bucket' is not allowed on active_days signals: "
    "they always use 1d buckets",
    (None, "bucket"): "'bucket' is only allowed on windowed count, sum and distinct_users signals",
    (None, "where"): "'where' only applies to event signals (count, sum, distinct_users, "
    "active_days, ever)",
    (None, "property"): "'property' only applies to sum signals",
    (None, "in"): "'in' only applies to users_with_trait signals",
    (None, "half_life"): "'half_life' only applies to windowed count and sum signals (their "
    "buckets decay)",
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------------
# Signals


def _events(ctx: Ctx, node: Node, path: str) -> tuple[bool, frozenset[str] | None]:
    """`any` -> None; "Event" -> {"Event"}; ["A", "B"] -> {"A", "B"}."""
    expected = "expected an event name, 'any', or a list of event names"
    if isinstance(node, SequenceNode):
        names: list[str] = []
        ok = True
        if not node.value:
            ctx.add(node, path, f"{expected}; the list is empty")
            return False, None
        for i, item in enumerate(node.value):
            item_ok, value = ctx.value(item, f"{path}[{i}]")
            if not item_ok:
                ok = False
            elif not isinstance(value, str) or not value.strip():
                ctx.add(item, f"{path}[{i}]", f"expected an event name, got {value!r}")
                ok = False
            elif value == "any":
                ctx.add(item, f"{path}[{i}]", "'any' cannot be mixed with event names")
                ok = False
            else:
                names.append(value)
        return ok, frozenset(names)
    if not isinstance(node, ScalarNode):
        ctx.add(node, path, expected)
        return False, None
    ok, value = ctx.value(node, path)
    if not ok:
        return False, None
    if not isinstance(value, str) or not value.strip():
        ctx.add(node, path, f"{expected}, got {value!r}")
        return False, None
    return True, None if value == "any" else frozenset({value})


def _trait_values(ctx: Ctx, node: Node, path: str) -> frozenset[Value] | None:
    if not isinstance(node, SequenceNode) or not node.value:
        ctx.add(node, path, 'expected a non-empty list of trait values, like ["VP Sales"]')
        return None
    values: list[Value] = []
    for i, item in enumerate(node.value):
        ok, value = ctx.value(item, f"{path}[{i}]")
        if ok and (isinstance(value, str | bool) or is_number(value)):
            values.append(value)
        elif ok:
            ctx.add(item, f"{path}[{i}]", f"expected a string, number or boolean, got {value!r}")
    return frozenset(values)


def check_name(ctx: Ctx, name: str, node: Node, path: str, what: str) -> bool:
    if not _IDENTIFIER.fullmatch(name):
        ctx.add(
            node,
            path,
            f"{what} name '{name}' must be an identifier (letters, digits, '_'; "
            "not starting with a digit) so expressions can read it",
        )
        return False
    if name in RESERVED_NAMES:
        ctx.add(node, path, f"'{name}' is reserved and cannot name a {what}")
        return False
    return True


def parse_signal(ctx: Ctx, name: str, key_node: Node, node: Node) -> Signal | None:
    path = f"signals.{name}"
    before = len(ctx.issues)
    entries = entries_of(ctx, node, path, 'a mapping like {count: "Message Sent", window: 30d}')
    if entries is None:
        return None
    options = {key: (knode, vnode) for key, knode, vnode in entries}
    kinds = [key for key, _, _ in entries if key in KIND_KEYS]
    if not kinds:
        ctx.add(node, path, f"a signal needs one of: {', '.join(KIND_KEYS)}")
    elif len(kinds) > 1:
        knode = options[kinds[1]][0]
        ctx.add(
            knode,
            join(path, kinds[1]),
            f"a signal has exactly one kind, but found '{kinds[0]}' and '{kinds[1]}'",
        )
    kind = SignalKind(kinds[0]) if kinds else None
    for key, knode, _ in entries:
        if key in KIND_KEYS:
            continue
        if key not in SIGNAL_OPTION_KEYS:
            unknown_key(ctx, key, knode, path, SIGNAL_KEYS)
        elif kind is not None and len(kinds) == 1 and key not in _ALLOWED_OPTIONS[kind]:
            why = _WHY_NOT.get((kind, key)) or _WHY_NOT.get((None, key))
            ctx.add(knode, join(path, key), why or f"'{key}' is not allowed on {kind} signals")
    if kind is None:
        return None

    kind_node = options[kind.value][1]
    events: frozenset[str] | None = None
    trait: str | None = None
    if kind in _EVENT_KINDS:
        _, events = _events(ctx, kind_node, join(path, kind.value))
    else:
        trait = non_empty_str(ctx, kind_node, join(path, kind.value), "a trait name")

    where = None
    if "where" in options and kind in _EVENT_KINDS:
        where = expr_at(ctx, options["where"][1], join(path, "where"), scope=None)

    prop = None
    if kind is SignalKind.SUM:
        if "property" in options:
            prop = non_empty_str(
                ctx, options["property"][1], join(path, "property"), "a property name"
            )
        else:
            ctx.add(
                node,
                join(path, "property"),
                "sum signals need 'property': the numeric event property to add up",
            )

    window_ms = None
    if "window" in options and kind in _ALLOWED_OPTIONS and "window" in _ALLOWED_OPTIONS[kind]:
        window_ms = duration_at(ctx, options["window"][1], join(path, "window"))
        if kind is SignalKind.ACTIVE_DAYS and window_ms is not None and window_ms < DAY_MS:
            ctx.add(
                options["window"][1],
                join(path, "window"),
                f"active_days needs a window of at least 1d, got {format_duration(window_ms)}",
            )

    bucket_ms = None
    if kind is SignalKind.ACTIVE_DAYS:
        bucket_ms = DAY_MS if window_ms is not None else None
    elif window_ms is not None:
        bucket_ms = default_bucket_ms(window_ms)
    if "bucket" in options and "bucket" in _ALLOWED_OPTIONS[kind]:
        bnode = options["bucket"][1]
        explicit = duration_at(ctx, bnode, join(path, "bucket"))
        if "window" not in options:
            ctx.add(bnode, join(path, "bucket"), "'bucket' needs a 'window'")
        elif explicit is not None and window_ms is not None:
            if explicit > window_ms:
                ctx.add(
                    bnode,
                    join(path, "bucket"),
                    f"bucket {format_duration(explicit)} is longer than the window "
                    f"{format_duration(window_ms)}",
                )
            else:
                bucket_ms = explicit

    half_life = None
    if "half_life" in options and "half_life" in _ALLOWED_OPTIONS[kind]:
        hnode = options["half_life"][1]
        half_life = duration_at(ctx, hnode, join(path, "half_life"))
        if "window" not in options:
            ctx.add(
                hnode,
                join(path, "half_life"),
                "'half_life' needs a 'window': the decay weighs the window's buckets",
            )

    values = None
    if kind is SignalKind.USERS_WITH_TRAIT and "in" in options:
        values = _trait_values(ctx, options["in"][1], join(path, "in"))

    if len(ctx.issues) != before:
        return None
    return Signal(
        name=name,
        kind=kind,
        events=events,
        where=where,
        property=prop,
        window_ms=window_ms,
        bucket_ms=bucket_ms,
        trait=trait,
        values=values,
        half_life_ms=half_life,
        line=key_node.start_mark.line + 1,
    )
