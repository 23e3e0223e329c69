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
from yaml.nodes import MappingNode, Node, SequenceNode

from streams.model.errors import ModelError, ModelIssue
from streams.model.nodes import (
    Ctx,
    Scope,
    entries_of,
    expr_at,
    is_null,
    join,
    non_empty_str,
    unknown_key,
    yaml_problem,
)
from streams.model.playbook import parse_playbook
from streams.model.rules_loader import parse_rule
from streams.model.signals_loader import RESERVED_NAMES, check_name, parse_signal
from streams.model.spec import (
    Model,
    Qualify,
    Rule,
    Segment,
    Signal,
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
QUALIFY_KEYS = ("when", "exit")
SEGMENT_KEYS = ("when", "description")


# Which option keys each kind accepts, and why the others are refused.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
            if not check_name(ctx, key, knode, f"signals.{key}", "signal"):
                continue
            known.add(key)
            signal = parse_signal(ctx, key, knode, vnode)
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
                rule = parse_rule(ctx, i, item, rule_scope, known)
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
        named_ok = check_name(ctx, key, knode, path, "segment")
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
