"""Load and validate a PQL model from YAML.

The loader walks PyYAML's composed node tree rather than plain dicts so that every problem knows
the line it comes from, and so that duplicate keys — which `yaml.safe_load` silently collapses to
the last one — are caught. It collects every issue before raising, because a model author wants
the whole list in one `pql model check` run, not one error per edit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from streams.model.durations import (
    DAY_MS,
    default_bucket_ms,
    format_duration,
)
from streams.model.errors import ModelError, ModelIssue
from streams.model.expr import KEYWORDS
from streams.model.nodes import (
    Ctx,
    Scope,
    did_you_mean,
    duration_at,
    entries_of,
    expr_at,
    fmt,
    is_null,
    is_number,
    join,
    non_empty_str,
    number_at,
    unknown_key,
    yaml_problem,
)
from streams.model.playbook import parse_playbook
from streams.model.spec import (
    Model,
    PerRule,
    Qualify,
    Rule,
    Segment,
    Signal,
    SignalKind,
    Value,
    WhenRule,
)

__all__ = ["parse_model", "load_model", "check_model", "RESERVED_NAMES"]

TOP_KEYS = (
    "name",
    "version",
    "description",
    "signals",
    "score",
    "qualify",
    "segments",
    "playbook",
)
KIND_KEYS = tuple(kind.value for kind in SignalKind)
SIGNAL_OPTION_KEYS = ("where", "window", "bucket", "property", "in", "half_life", "description")
SIGNAL_KEYS = KIND_KEYS + SIGNAL_OPTION_KEYS
WHEN_RULE_KEYS = ("when", "points", "name")
PER_RULE_KEYS = ("per", "every", "points", "max", "name")
RULE_KEYS = ("when", "per", "every", "points", "max", "name")
QUALIFY_KEYS = ("when", "exit")
SEGMENT_KEYS = ("when", "description")

# Names an expression reads that are not signals; a signal or segment may not take them.
RESERVED_NAMES = KEYWORDS | {"score", "pql"}

# Which option keys each kind accepts, and why the others are refused.
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
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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


def _check_name(ctx: Ctx, name: str, node: Node, path: str, what: str) -> bool:
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


def _signal(ctx: Ctx, name: str, key_node: Node, node: Node) -> Signal | None:
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


# ---------------------------------------------------------------------------------------------
# Score rules


def _per_label(signal: str, every: float, points: float, cap: float | None) -> str:
    unit = "point" if points in (1, -1) else "points"
    label = f"{fmt(points)} {unit} per {fmt(every)} {signal}"
    return f"{label} (max {fmt(cap)})" if cap is not None else label


def _rule(ctx: Ctx, index: int, node: Node, scope: Scope, signals: set[str]) -> Rule | None:
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


# ---------------------------------------------------------------------------------------------
# The whole model


def _refusals(
    segments: Iterable[str], where: str, pql_why: str | None, score_why: str | None
) -> dict[str, str]:
    refused = {
        name: f"'{name}' is a segment; {where} cannot read segments (only later segments can)"
        for name in segments
    }
    if pql_why:
        refused["pql"] = pql_why
    if score_why:
        refused["score"] = score_why
    return refused


def _model(ctx: Ctx, root: Node, text: str, source: str | None) -> Model | None:
    entries = entries_of(ctx, root, "", "a mapping with name, version, signals, score and qualify")
    if entries is None:
        return None
    top = {key: (knode, vnode) for key, knode, vnode in entries}
    extra: dict[str, Any] = {}
    for key, knode, vnode in entries:
        if key.startswith("x-"):
            try:
                extra[key] = ctx.constructor.construct_object(vnode, deep=True)
            except yaml.YAMLError as exc:
                ctx.add(vnode, key, f"cannot read value: {yaml_problem(exc)}")
        elif key not in TOP_KEYS:
            unknown_key(ctx, key, knode, "", TOP_KEYS)
    for required in ("name", "version", "signals", "qualify"):
        if required not in top:
            ctx.add(root, required, f"'{required}' is required")

    name = None
    if "name" in top:
        name = non_empty_str(ctx, top["name"][1], "name", "a model name")
        if name is not None and not _SLUG.fullmatch(name):
            ctx.add(
                top["name"][1],
                "name",
                f"name '{name}' must use only letters, digits, '-', '_' and '.'",
            )
            name = None
    version = None
    if "version" in top:
        ok, value = ctx.value(top["version"][1], "version")
        if ok and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            ctx.add(top["version"][1], "version", f"version must be a whole number, got {value!r}")
        elif ok:
            version = value
    description = ""
    if "description" in top:
        description = (
            non_empty_str(ctx, top["description"][1], "description", "a description text") or ""
        )

    # Signals. A signal name counts as known even if its definition has issues, so that a
    # typo in one signal does not cascade into "unknown signal" everywhere it is used.
    signals: list[Signal] = []
    known: set[str] = set()
    if "signals" in top:
        signal_entries = entries_of(ctx, top["signals"][1], "signals", "a mapping of signals")
        if signal_entries is not None and not signal_entries:
            ctx.add(top["signals"][1], "signals", "define at least one signal")
        for key, knode, vnode in signal_entries or []:
            if not _check_name(ctx, key, knode, f"signals.{key}", "signal"):
                continue
            known.add(key)
            signal = _signal(ctx, key, knode, vnode)
            if signal is not None:
                signals.append(signal)

    segment_names: list[str] = []
    segment_entries: list[tuple[str, Node, Node]] = []
    if "segments" in top and not is_null(top["segments"][1]):
        segment_entries = (
            entries_of(
                ctx, top["segments"][1], "segments", "a mapping of segment name to condition"
            )
            or []
        )
        segment_names = [key for key, _, _ in segment_entries]

    # Score rules: signals only.
    rules: list[Rule] = []
    if "score" in top and not is_null(top["score"][1]):
        score_node = top["score"][1]
        rule_scope = Scope(
            frozenset(known),
            _refusals(
                segment_names,
                "score rules",
                "'pql' can only be used in segments",
                "'score' cannot be used inside score rules: a rule cannot depend on the total "
                "it adds to",
            ),
        )
        if not isinstance(score_node, SequenceNode):
            ctx.add(score_node, "score", "expected a list of rules")
        else:
            for i, item in enumerate(score_node.value):
                rule = _rule(ctx, i, item, rule_scope, known)
                if rule is not None:
                    rules.append(rule)

    # Qualification: signals and score.
    qualify = None
    if "qualify" in top:
        q_entries = entries_of(ctx, top["qualify"][1], "qualify", 'a mapping like {when: "..."}')
        if q_entries is not None:
            q_options = {key: vnode for key, _, vnode in q_entries}
            for key, knode, _ in q_entries:
                if key not in QUALIFY_KEYS:
                    unknown_key(ctx, key, knode, "qualify", QUALIFY_KEYS)
            q_scope = Scope(
                frozenset(known | {"score"}),
                _refusals(
                    segment_names,
                    "qualify",
                    "'pql' cannot be used in qualify: it is what qualify decides",
                    None,
                ),
            )
            when = exit_ = None
            if "when" not in q_options:
                ctx.add(top["qualify"][1], "qualify.when", "'qualify.when' is required")
            else:
                when = expr_at(ctx, q_options["when"], "qualify.when", q_scope)
            if "exit" in q_options and not is_null(q_options["exit"]):
                exit_ = expr_at(ctx, q_options["exit"], "qualify.exit", q_scope)
            if when is not None:
                qualify = Qualify(when=when, exit=exit_)

    # Segments: signals, score, pql and segments defined above.
    segments: list[Segment] = []
    above: set[str] = set()
    for index, (key, knode, vnode) in enumerate(segment_entries):
        path = f"segments.{key}"
        named_ok = _check_name(ctx, key, knode, path, "segment")
        if named_ok and key in known:
            ctx.add(knode, path, f"segment '{key}' has the same name as a signal")
            named_ok = False
        later = segment_names[index:]
        scope = Scope(
            frozenset(known | {"score", "pql"} | above),
            {
                n: (
                    f"segment '{key}' cannot read itself"
                    if n == key
                    else f"segment '{n}' is defined below '{key}'; a segment can only read "
                    "segments above it"
                )
                for n in later
            },
        )
        expr_node: Node | None = vnode
        if isinstance(vnode, MappingNode):
            seg_entries = entries_of(ctx, vnode, path, "a mapping") or []
            seg_options = {k: v for k, _, v in seg_entries}
            for k, kn, v in seg_entries:
                if k not in SEGMENT_KEYS:
                    unknown_key(ctx, k, kn, path, SEGMENT_KEYS)
                elif k == "description":
                    non_empty_str(ctx, v, join(path, k), "a description text")
            expr_node = seg_options.get("when")
            if expr_node is None:
                ctx.add(vnode, join(path, "when"), "'when' is required")
            path = join(path, "when")
        if named_ok:
            above.add(key)
        if expr_node is None:
            continue
        expr = expr_at(ctx, expr_node, path, scope)
        if expr is not None and named_ok:
            segments.append(Segment(name=key, expr=expr, line=knode.start_mark.line + 1))

    playbook = None
    if "playbook" in top and not is_null(top["playbook"][1]):
        ctx.known = known
        playbook = parse_playbook(
            ctx,
            top["playbook"][1],
            {s.name: s for s in signals},
            segment_names,
            Scope(
                frozenset(known | {"score"}),
                _refusals(
                    segment_names, "the playbook", "'pql' cannot be used in the playbook", None
                ),
            ),
        )

    if ctx.issues or name is None or version is None or qualify is None:
        return None
    return Model(
        name=name,
        version=version,
        signals=tuple(signals),
        score=tuple(rules),
        qualify=qualify,
        segments=tuple(segments),
        description=description,
        fingerprint=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        source_path=source,
        extra=extra,
        playbook=playbook,
    )


def _load(text: str, source: str | None) -> tuple[Model | None, list[ModelIssue]]:
    ctx = Ctx(constructor=SafeConstructor())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {yaml_problem(exc)}"
        context = getattr(exc, "context_mark", None)
        if context is not None and context.line + 1 != line:
            message += f" (the construct started on line {context.line + 1})"
        return None, [ModelIssue(line, "yaml", message)]
    if root is None:
        return None, [
            ModelIssue(1, "model", "the model is empty; expected name, version, signals, qualify")
        ]
    model = _model(ctx, root, text, source)
    issues = sorted(ctx.issues, key=lambda issue: issue.line)
    return model, issues


def parse_model(text: str, source: str | None = None) -> Model:
    """Parse and validate model YAML; raises ModelError listing every issue, in line order."""
    model, issues = _load(text, source)
    if issues or model is None:
        raise ModelError(issues, source)
    return model


def load_model(path: str | Path) -> Model:
    """Read and parse a model file; `Model.source_path` is the path as given."""
    text = Path(path).read_text(encoding="utf-8")
    return parse_model(text, source=str(path))


def check_model(text: str) -> list[ModelIssue]:
    """Every issue in model YAML, in line order; empty when the model is valid."""
    return _load(text, None)[1]
