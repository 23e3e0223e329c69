"""Where transitions go: destinations (Slack incoming webhooks, generic JSON webhooks) and the
rules that pick them.

```yaml
destinations:
  sales:   {slack: "https://hooks.slack.com/services/T000/B000/XXXX"}
  crm:     {webhook: "https://crm.example.com/hooks/pql", secret_env: CRM_SECRET, timeout: 10s}
  success: {slack: "https://hooks.slack.com/services/T000/B111/YYYY"}
routes:
  - {to: sales, alerts_only: true, routes: [sales_led, sales_assist]}
  - {to: crm}                                  # every transition
  - {to: success, kinds: [segment_entered], segments: [purgatory]}
```

A transition goes to every destination one of whose rules it matches (once, however many match).
A rule matches when each of its filters does: `kinds`, `segments` (the transition's segment),
`routes` (its playbook's route), `alerts_only` (its playbook's `alert`; for a model without a
playbook, a qualification is the alert). Without a routes file, `--webhook` gets every
transition and `--slack-webhook` the alerts.

Errors name the file's line and field, like a model's (`streams.model.nodes`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import Node, SequenceNode

from streams.model.durations import DurationError, parse_duration
from streams.model.errors import ModelIssue
from streams.model.nodes import Ctx, entries_of, join, non_empty_str, options_of, yaml_problem

KINDS = ("qualified", "disqualified", "segment_entered", "segment_exited")
DEST_KINDS = ("slack", "webhook")
DEST_KEYS = ("slack", "webhook", "secret", "secret_env", "timeout")
RULE_KEYS = ("to", "kinds", "segments", "routes", "alerts_only")
DEFAULT_TIMEOUT_S = 10.0


class RoutesError(ValueError):
    """A routes file (or the options) that cannot be used; `issues` name lines and fields."""

    def __init__(self, issues: list[ModelIssue], source: str | None) -> None:
        self.issues = issues
        self.source = source
        where = f"{source}:" if source else "line "
        super().__init__("\n".join(f"{where}{i.line}: {i.field}: {i.message}" for i in issues))


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    kind: str  # "slack" or "webhook"
    url: str
    secret: str | None = None  # webhooks: the HMAC-SHA256 key
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Rule:
    to: str
    kinds: frozenset[str] | None = None
    segments: frozenset[str] | None = None
    routes: frozenset[str] | None = None
    alerts_only: bool = False
    line: int = 0

    def matches(self, t: Mapping[str, Any]) -> bool:
        if self.kinds is not None and t.get("kind") not in self.kinds:
            return False
        if self.segments is not None and t.get("segment") not in self.segments:
            return False
        playbook = t.get("playbook")
        if self.routes is not None and (
            not isinstance(playbook, Mapping) or playbook.get("route") not in self.routes
        ):
            return False
        return not self.alerts_only or is_alert(t)


def is_alert(t: Mapping[str, Any]) -> bool:
    """Whether someone should act on `t`: its playbook says (`alert`); without a playbook, a
    qualification is the alert."""
    playbook = t.get("playbook")
    if isinstance(playbook, Mapping):
        return playbook.get("alert") is True
    return t.get("kind") == "qualified"


@dataclass(frozen=True, slots=True)
class Routing:
    destinations: dict[str, Destination]
    rules: tuple[Rule, ...] = field(default=())

    def targets(self, t: Mapping[str, Any]) -> list[str]:
        """The destinations `t` goes to, in the order they are defined."""
        hit = {r.to for r in self.rules if r.matches(t)}
        return [name for name in self.destinations if name in hit]


def _url(ctx: Ctx, node: Node, path: str) -> str | None:
    url = non_empty_str(ctx, node, path, "a URL")
    if url is not None and not url.startswith(("http://", "https://")):
        ctx.add(node, path, f"expected an http:// or https:// URL, got {url!r}")
        return None
    return url


def _names(ctx: Ctx, node: Node, path: str, allowed: tuple[str, ...] | None) -> frozenset[str]:
    if not isinstance(node, SequenceNode) or not node.value:
        ctx.add(node, path, "expected a non-empty list")
        return frozenset()
    out = []
    for i, item in enumerate(node.value):
        value = non_empty_str(ctx, item, f"{path}[{i}]", "a name")
        if value is not None and allowed is not None and value not in allowed:
            ctx.add(item, f"{path}[{i}]", f"expected one of {', '.join(allowed)}, got {value!r}")
        elif value is not None:
            out.append(value)
    return frozenset(out)


def _destination(ctx: Ctx, name: str, node: Node, env: Mapping[str, str]) -> Destination | None:
    path = f"destinations.{name}"
    before = len(ctx.issues)
    options = options_of(ctx, node, path, "a mapping like {webhook: URL}", DEST_KEYS)
    if options is None:
        return None
    kinds = [k for k in DEST_KINDS if k in options]
    if len(kinds) != 1:
        ctx.add(node, path, "a destination has exactly one of slack: URL or webhook: URL")
        return None
    kind = kinds[0]
    url = _url(ctx, options[kind], join(path, kind))
    secret = None
    if "secret" in options:
        secret = non_empty_str(ctx, options["secret"], join(path, "secret"), "a secret")
    if "secret_env" in options:
        var = non_empty_str(ctx, options["secret_env"], join(path, "secret_env"), "a name")
        if var is not None and not env.get(var):
            ctx.add(
                options["secret_env"],
                join(path, "secret_env"),
                f"environment variable {var} is not set (it holds this webhook's secret)",
            )
        elif var is not None:
            secret = env[var]
    if secret is not None and kind == "slack":
        ctx.add(
            node, join(path, "secret"), "Slack webhooks are not signed: a secret is for webhook:"
        )
    timeout = DEFAULT_TIMEOUT_S
    if "timeout" in options:
        ok, value = ctx.value(options["timeout"], join(path, "timeout"))
        try:
            timeout = parse_duration(value) / 1000 if ok else timeout
        except DurationError as exc:
            ctx.add(options["timeout"], join(path, "timeout"), str(exc))
    if len(ctx.issues) != before or url is None:
        return None
    return Destination(name, kind, url, secret, timeout)


def _rule(ctx: Ctx, index: int, node: Node, names: set[str]) -> Rule | None:
    path = f"routes[{index}]"
    before = len(ctx.issues)
    options = options_of(ctx, node, path, "a rule like {to: NAME}", RULE_KEYS, ("to",))
    if options is None or "to" not in options:
        return None
    to = non_empty_str(ctx, options["to"], join(path, "to"), "a destination name")
    if to is not None and to not in names:
        known = ", ".join(sorted(names)) or "none defined"
        ctx.add(options["to"], join(path, "to"), f"unknown destination {to!r} ({known})")
    kinds = (
        _names(ctx, options["kinds"], join(path, "kinds"), KINDS) if "kinds" in options else None
    )
    segments = (
        _names(ctx, options["segments"], join(path, "segments"), None)
        if "segments" in options
        else None
    )
    routes = (
        _names(ctx, options["routes"], join(path, "routes"), None) if "routes" in options else None
    )
    alerts_only = False
    if "alerts_only" in options:
        ok, value = ctx.value(options["alerts_only"], join(path, "alerts_only"))
        if ok and not isinstance(value, bool):
            ctx.add(options["alerts_only"], join(path, "alerts_only"), "expected true or false")
        elif ok:
            alerts_only = value
    if len(ctx.issues) != before or to is None:
        return None
    return Rule(to, kinds, segments, routes, alerts_only, node.start_mark.line + 1)


def parse_routes(
    text: str,
    source: str | None = None,
    flags: Mapping[str, Destination] | None = None,
    env: Mapping[str, str] | None = None,
) -> Routing:
    """A routes file; `flags`: destinations given as options (`--webhook`, `--slack-webhook`),
    which its rules may name too. Raises RoutesError listing every issue."""
    ctx = Ctx(constructor=SafeConstructor())
    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        issue = ModelIssue(line, "yaml", f"invalid YAML: {yaml_problem(exc)}")
        raise RoutesError([issue], source) from None
    destinations: dict[str, Destination] = dict(flags or {})
    rules: list[Rule] = []
    if root is None:
        raise RoutesError([ModelIssue(1, "routes", "the file is empty")], source)
    top = options_of(
        ctx,
        root,
        "",
        "a mapping with destinations and routes",
        ("destinations", "routes"),
        ("routes",),
    )
    declared: set[str] = set()  # named in the file, valid or not (no cascade of errors)
    if top is not None and "destinations" in top:
        for name, _, node in (
            entries_of(ctx, top["destinations"], "destinations", "a mapping") or []
        ):
            declared.add(name)
            dest = _destination(ctx, name, node, env)
            if dest is not None:
                destinations[name] = dest
    if top is not None and "routes" in top:
        node = top["routes"]
        if not isinstance(node, SequenceNode) or not node.value:
            ctx.add(node, "routes", "expected a non-empty list of rules")
        else:
            names = set(destinations) | declared
            for i, item in enumerate(node.value):
                rule = _rule(ctx, i, item, names)
                if rule is not None:
                    rules.append(rule)
    if ctx.issues:
        raise RoutesError(sorted(ctx.issues, key=lambda i: i.line), source)
    return Routing(destinations, tuple(rules))


def load_routes(path: str | Path, flags: Mapping[str, Destination] | None = None) -> Routing:
    return parse_routes(Path(path).read_text(encoding="utf-8"), str(path), flags)


def default_routing(flags: Mapping[str, Destination]) -> Routing:
    """No routes file: a webhook gets every transition, Slack the alerts."""
    rules = tuple(Rule(name, alerts_only=dest.kind == "slack") for name, dest in flags.items())
    return Routing(dict(flags), rules)
