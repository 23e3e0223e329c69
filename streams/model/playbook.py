"""The `playbook:` section of a model: what should happen when an account qualifies.

```yaml
playbook:
  complexity: intermediate              # simple | intermediate | complex
  deal_size:
    value: "seats * 96"                 # signals and score: here an annual value in dollars
    bands: {small: 0, medium: 5000, large: 25000}   # lower bounds, ascending
  routes:                               # optional: override the matrix for a band
    large: {route: sales_led, respond_within: 4h}
  segments:                             # entering these calls for someone too
    purgatory: {route: customer_success, respond_within: 48h}
  owner:
    trait: account_owner                # a trait signal: used when the account has it
    rules:
      - {when: "region == 'EMEA'", owner: emea-sales@acme.com}
    pool: [ana@acme.com, ben@acme.com]  # else one of these, chosen by the account id
  contacts:
    titles: decision_makers             # a users_with_trait signal
    active: active_users                # a windowed distinct_users signal
    max: 3
  cooldown: 14d                         # no second alert for the same play within 14 days
```

A playbook reads only signals (and `score`), so adding or changing one never touches kept state:
it is a decision change (`pql model diff`), applied live at a switch.
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from streams.model.durations import HOUR_MS, format_duration
from streams.model.nodes import (
    Ctx,
    Scope,
    did_you_mean,
    duration_at,
    entries_of,
    expr_at,
    fmt,
    is_null,
    join,
    non_empty_str,
    number_at,
    options_of,
)
from streams.model.spec import Complexity, OwnerRule, Playbook, Route, Signal, SignalKind

PLAYBOOK_KEYS = ("complexity", "deal_size", "routes", "segments", "owner", "contacts", "cooldown")
DEAL_KEYS = ("value", "bands")
ROUTE_KEYS = ("route", "respond_within")
OWNER_KEYS = ("trait", "rules", "pool")
OWNER_RULE_KEYS = ("when", "owner")
CONTACT_KEYS = ("titles", "active", "max")

# The complexity x deal-size matrix: the more complex the product, the sooner sales or success
# should step in; the bigger the deal, the sooner to reach out (README "Playbooks").
_H = HOUR_MS
DEFAULT_ROUTES: dict[Complexity, dict[str, Route]] = {
    Complexity.SIMPLE: {
        "small": Route("self_serve", 72 * _H),
        "medium": Route("self_serve", 48 * _H),
        "large": Route("sales_assist", 24 * _H),
    },
    Complexity.INTERMEDIATE: {
        "small": Route("self_serve", 48 * _H),
        "medium": Route("sales_assist", 24 * _H),
        "large": Route("sales_led", 8 * _H),
    },
    Complexity.COMPLEX: {
        "small": Route("sales_assist", 24 * _H),
        "medium": Route("sales_led", 8 * _H),
        "large": Route("sales_led", 4 * _H),
    },
}
MAX_CONTACTS = 20


def _route(ctx: Ctx, node: Node, path: str) -> Route | None:
    options = options_of(
        ctx,
        node,
        path,
        "a mapping like {route: sales_led, respond_within: 4h}",
        ROUTE_KEYS,
        ROUTE_KEYS,
    )
    if options is None or set(options) != set(ROUTE_KEYS):
        return None
    name = non_empty_str(ctx, options["route"], join(path, "route"), "a route name")
    within = duration_at(ctx, options["respond_within"], join(path, "respond_within"))
    if name is None or within is None:
        return None
    return Route(name, within)


def _bands(
    ctx: Ctx, node: Node, path: str, lines: dict[str, int]
) -> list[tuple[str, float]] | None:
    """The bands in order; `lines` gets each band's line."""
    entries = entries_of(ctx, node, path, "a mapping of band name to its lower bound")
    if entries is None:
        return None
    if not entries:
        ctx.add(node, path, "define at least one band")
        return None
    bands: list[tuple[str, float]] = []
    for key, knode, vnode in entries:
        lines[key] = knode.start_mark.line + 1
        floor = number_at(ctx, vnode, join(path, key), "a band's lower bound")
        if floor is None:
            return None
        if bands and floor <= bands[-1][1]:
            ctx.add(
                vnode,
                join(path, key),
                f"bands must be in ascending order: '{key}' starts at {fmt(floor)}, not above "
                f"'{bands[-1][0]}' ({fmt(bands[-1][1])})",
            )
            return None
        bands.append((key, floor))
    return bands


def _signal_ref(
    ctx: Ctx, node: Node, path: str, signals: dict[str, Signal], kinds: set[SignalKind], what: str
) -> str | None:
    name = non_empty_str(ctx, node, path, "a signal name")
    if name is None:
        return None
    signal = signals.get(name)
    if signal is None:
        if name not in ctx.known:  # else the signal's own definition has issues, reported
            ctx.add(node, path, f"unknown signal '{name}'{did_you_mean(name, signals)}")
        return None
    if signal.kind not in kinds:
        ctx.add(node, path, f"'{name}' is a {signal.kind} signal; {what}")
        return None
    return name


def _owner(
    ctx: Ctx, node: Node, path: str, signals: dict[str, Signal], scope: Scope
) -> tuple[str | None, tuple[OwnerRule, ...], tuple[str, ...]]:
    what = "a mapping with trait, rules and/or pool"
    options = options_of(ctx, node, path, what, OWNER_KEYS) or {}
    trait = None
    if "trait" in options:
        trait = _signal_ref(
            ctx,
            options["trait"],
            join(path, "trait"),
            signals,
            {SignalKind.TRAIT},
            "the owner comes from a trait signal (like {trait: owner_email})",
        )
    rules: list[OwnerRule] = []
    if "rules" in options:
        rules_node = options["rules"]
        if not isinstance(rules_node, SequenceNode):
            ctx.add(rules_node, join(path, "rules"), "expected a list of {when, owner} rules")
        else:
            for i, item in enumerate(rules_node.value):
                rule = _owner_rule(ctx, item, f"{path}.rules[{i}]", scope)
                if rule is not None:
                    rules.append(rule)
    pool: list[str] = []
    if "pool" in options:
        pool_node = options["pool"]
        if not isinstance(pool_node, SequenceNode) or not pool_node.value:
            ctx.add(pool_node, join(path, "pool"), "expected a non-empty list of owners")
        else:
            for i, item in enumerate(pool_node.value):
                owner = non_empty_str(ctx, item, f"{path}.pool[{i}]", "an owner name")
                if owner is not None:
                    pool.append(owner)
    if not options:
        ctx.add(node, path, "an owner needs a trait, rules or a pool")
    return trait, tuple(rules), tuple(pool)


def _owner_rule(ctx: Ctx, node: Node, path: str, scope: Scope) -> OwnerRule | None:
    what = "a rule like {when: \"region == 'EMEA'\", owner: NAME}"
    options = options_of(ctx, node, path, what, OWNER_RULE_KEYS, OWNER_RULE_KEYS)
    if options is None or "when" not in options or "owner" not in options:
        return None
    when = expr_at(ctx, options["when"], join(path, "when"), scope)
    owner = non_empty_str(ctx, options["owner"], join(path, "owner"), "an owner name")
    if when is None or owner is None:
        return None
    return OwnerRule(when, owner, node.start_mark.line + 1)


def _contacts(
    ctx: Ctx, node: Node, path: str, signals: dict[str, Signal]
) -> tuple[str | None, str | None, int]:
    before = len(ctx.issues)
    what = "a mapping with titles, active and/or max"
    options = options_of(ctx, node, path, what, CONTACT_KEYS) or {}
    titles = active = None
    if "titles" in options:
        titles = _signal_ref(
            ctx,
            options["titles"],
            join(path, "titles"),
            signals,
            {SignalKind.USERS_WITH_TRAIT},
            "contacts by title come from a users_with_trait signal "
            '(like {users_with_trait: title, in: ["VP Sales"]})',
        )
    if "active" in options:
        active = _signal_ref(
            ctx,
            options["active"],
            join(path, "active"),
            signals,
            {SignalKind.DISTINCT_USERS},
            "the most active contacts come from a distinct_users signal",
        )
        if active is not None and signals[active].window_ms is None:
            ctx.add(
                options["active"],
                join(path, "active"),
                f"'{active}' has no window, so it does not know when a user was last active; "
                "give it a window (like 30d)",
            )
            active = None
    limit = 3
    if "max" in options:
        value = number_at(ctx, options["max"], join(path, "max"), "max")
        if value is not None and (value != int(value) or not 1 <= value <= MAX_CONTACTS):
            ctx.add(
                options["max"],
                join(path, "max"),
                f"max must be a whole number from 1 to {MAX_CONTACTS}, got {fmt(value)}",
            )
        elif value is not None:
            limit = int(value)
    if titles is None and active is None and len(ctx.issues) == before:
        ctx.add(node, path, "contacts need titles and/or active")
    return titles, active, limit


def parse_playbook(
    ctx: Ctx,
    node: Node,
    signals: dict[str, Signal],
    segment_names: list[str],
    scope: Scope,
) -> Playbook | None:
    """The `playbook:` section, or None (its issues added to `ctx`). `scope`: what its
    expressions may read (signals and score)."""
    path = "playbook"
    before = len(ctx.issues)
    what = "a mapping with complexity, deal_size and more"
    options = options_of(ctx, node, path, what, PLAYBOOK_KEYS, ("complexity", "deal_size"))
    if options is None:
        return None

    complexity = None
    if "complexity" in options:
        ok, value = ctx.value(options["complexity"], "playbook.complexity")
        names = [c.value for c in Complexity]
        if ok and value in names:
            complexity = Complexity(value)
        elif ok:
            ctx.add(
                options["complexity"],
                "playbook.complexity",
                f"complexity must be one of {', '.join(names)}, got {value!r}"
                + (did_you_mean(value, names) if isinstance(value, str) else ""),
            )

    deal = bands = None
    band_lines: dict[str, int] = {}
    if "deal_size" in options:
        dpath = "playbook.deal_size"
        dnode = options["deal_size"]
        what = 'a mapping like {value: "seats * 96", bands: ...}'
        d_options = options_of(ctx, dnode, dpath, what, DEAL_KEYS, DEAL_KEYS) or {}
        if "value" in d_options:
            deal = expr_at(ctx, d_options["value"], join(dpath, "value"), scope, value=True)
        if "bands" in d_options:
            bands = _bands(ctx, d_options["bands"], join(dpath, "bands"), band_lines)

    overrides: dict[str, Route] = {}
    if "routes" in options:
        rpath = "playbook.routes"
        band_names = [name for name, _ in bands or []]
        for key, knode, vnode in entries_of(ctx, options["routes"], rpath, "a mapping") or []:
            if bands is not None and key not in band_names:
                ctx.add(
                    knode,
                    join(rpath, key),
                    f"'{key}' is not a deal-size band ({', '.join(band_names)})"
                    + did_you_mean(key, band_names),
                )
                continue
            route = _route(ctx, vnode, join(rpath, key))
            if route is not None:
                overrides[key] = route

    routes: dict[str, Route] = {}
    if complexity is not None and bands is not None:
        matrix = DEFAULT_ROUTES[complexity]
        for name, _ in bands:
            route = overrides.get(name) or matrix.get(name)
            if route is None:
                ctx.add(
                    band_lines[name],
                    f"playbook.deal_size.bands.{name}",
                    f"band '{name}' has no route: the built-in matrix knows small, medium and "
                    f"large; add `routes: {{{name}: {{route: ..., respond_within: ...}}}}`",
                )
            else:
                routes[name] = route

    plays: dict[str, Route] = {}
    if "segments" in options and not is_null(options["segments"]):
        spath = "playbook.segments"
        for key, knode, vnode in entries_of(ctx, options["segments"], spath, "a mapping") or []:
            if key not in segment_names:
                ctx.add(
                    knode,
                    join(spath, key),
                    f"unknown segment '{key}'{did_you_mean(key, segment_names)}",
                )
                continue
            route = _route(ctx, vnode, join(spath, key))
            if route is not None:
                plays[key] = route

    owner_trait: str | None = None
    owner_rules: tuple[OwnerRule, ...] = ()
    owner_pool: tuple[str, ...] = ()
    if "owner" in options:
        owner_trait, owner_rules, owner_pool = _owner(
            ctx, options["owner"], "playbook.owner", signals, scope
        )

    titles = active = None
    limit = 3
    if "contacts" in options:
        titles, active, limit = _contacts(ctx, options["contacts"], "playbook.contacts", signals)

    cooldown = 0
    if "cooldown" in options:
        cooldown = duration_at(ctx, options["cooldown"], "playbook.cooldown") or 0

    if len(ctx.issues) != before or complexity is None or deal is None or bands is None:
        return None
    return Playbook(
        complexity=complexity,
        deal_size=deal,
        bands=tuple(bands),
        routes=routes,
        segments=plays,
        owner_trait=owner_trait,
        owner_rules=owner_rules,
        owner_pool=owner_pool,
        titles=titles,
        active=active,
        max_contacts=limit,
        cooldown_ms=cooldown,
        source=yaml.serialize(node) if isinstance(node, MappingNode) else "",
        line=node.start_mark.line + 1,
    )


def describe_route(route: Route) -> str:
    """`sales_led within 4h`."""
    return f"{route.route} within {format_duration(route.respond_within_ms)}"
