"""The YAML node helpers the model's loaders share (`streams.model.loader`, and
`streams.model.playbook` for the `playbook:` section).

Every helper walks PyYAML's composed nodes, so a problem knows its line, and adds what is wrong to
the `Ctx` rather than raising: a model author gets every issue of a file in one run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from streams.model.durations import DurationError, parse_duration
from streams.model.errors import ModelIssue
from streams.model.expr import ExprSyntaxError, parse_condition, parse_expr
from streams.model.spec import Expr


@dataclass
class Ctx:
    """Collects issues while the tree is walked."""

    constructor: SafeConstructor
    issues: list[ModelIssue] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # signal names defined (valid or not)

    def add(self, node: Node | int, path: str, message: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.issues.append(ModelIssue(line, path, message))

    def value(self, node: Node, path: str) -> tuple[bool, Any]:
        """The Python value of a scalar node (typed by YAML's rules: 3 -> int, yes -> bool)."""
        if not isinstance(node, ScalarNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a mapping"
            self.add(node, path, f"expected a single value, got {kind}")
            return False, None
        try:
            return True, self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            self.add(node, path, f"cannot read value: {yaml_problem(exc)}")
            return False, None


def join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        return "; ".join(parts) if parts else str(exc)
    return str(exc)


def entries_of(ctx: Ctx, node: Node, path: str, what: str) -> list[tuple[str, Node, Node]] | None:
    """A mapping node's (key, key node, value node) in order; duplicates reported, first kept."""
    if not isinstance(node, MappingNode):
        ctx.add(node, path or "model", f"expected {what}")
        return None
    seen: dict[str, int] = {}
    out: list[tuple[str, Node, Node]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            ctx.add(key_node, path or "model", "keys must be plain strings")
            continue
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key == "<<":
            ctx.add(
                key_node,
                path or "model",
                "YAML merge keys ('<<') are not supported; write keys out",
            )
            continue
        if key in seen:
            ctx.add(
                key_node,
                join(path, key),
                f"duplicate key '{key}' (first defined on line {seen[key]})",
            )
            continue
        seen[key] = line
        out.append((key, key_node, value_node))
    return out


def unknown_key(ctx: Ctx, key: str, key_node: Node, path: str, known: Iterable[str]) -> None:
    ctx.add(key_node, join(path, key), f"unknown key '{key}'{did_you_mean(key, known)}")


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


# ---------------------------------------------------------------------------------------------
# Expressions and the names they may read


@dataclass(frozen=True)
class Scope:
    """What an expression in one part of the model may read, and why other names are refused."""

    allowed: frozenset[str]
    refused: dict[str, str]


def expr_at(
    ctx: Ctx, node: Node, path: str, scope: Scope | None, *, value: bool = False
) -> Expr | None:
    """A condition (its truth), or with `value` an expression's value (a number, a string)."""
    ok, text = ctx.value(node, path)
    if not ok:
        return None
    if not isinstance(text, str) or not text.strip():
        ctx.add(node, path, f"expected an expression string, got {text!r}")
        return None
    try:
        expr = parse_expr(text) if value else parse_condition(text)
    except ExprSyntaxError as exc:
        ctx.add(node, path, str(exc))
        return None
    if scope is None:
        return expr
    bad = False
    for name in sorted(expr.names):
        if name in scope.allowed:
            continue
        bad = True
        if name in scope.refused:
            ctx.add(node, path, scope.refused[name])
        else:
            hint = did_you_mean(name, scope.allowed)
            ctx.add(node, path, f"unknown signal '{name}'{hint}")
    return None if bad else expr


def duration_at(ctx: Ctx, node: Node, path: str) -> int | None:
    ok, value = ctx.value(node, path)
    if not ok:
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        ctx.add(node, path, str(exc))
        return None


def non_empty_str(ctx: Ctx, node: Node, path: str, what: str) -> str | None:
    ok, value = ctx.value(node, path)
    if not ok:
        return None
    if not isinstance(value, str) or not value.strip():
        ctx.add(node, path, f"expected {what}, got {value!r}")
        return None
    return value


def number_at(ctx: Ctx, node: Node, path: str, what: str) -> float | None:
    ok, value = ctx.value(node, path)
    if not ok:
        return None
    if not is_number(value):
        ctx.add(node, path, f"{what} must be a number, got {value!r}")
        return None
    return float(value)


def options_of(
    ctx: Ctx,
    node: Node,
    path: str,
    what: str,
    known: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, Node] | None:
    """A mapping of options: key -> value node. Unknown keys and missing required ones are
    reported; None when the node is not a mapping."""
    entries = entries_of(ctx, node, path, what)
    if entries is None:
        return None
    for key, knode, _ in entries:
        if key not in known:
            unknown_key(ctx, key, knode, path, known)
    options = {key: vnode for key, _, vnode in entries}
    for key in required:
        if key not in options:
            ctx.add(node, join(path, key), f"'{key}' is required")
    return options
