"""`pql fit`: learn a points model from history with outcomes, and validate it on a later period.

1. **Candidates**: for the most common track events (`top`), a 7-day and a 30-day count, plus
   seats (distinct users, 7 days) and active days (14 days): signals of the model language, so
   a fitted threshold means live exactly what it meant here. With `--base`, the base model's
   signals are candidates too.
2. **What was known before**: each account is observed once, `horizon` after it entered the
   funnel (its first `--signup-event`, default its first event), through the real core
   (`Backtest`): its signals as the worker would have had them then, nothing later. The label is
   whether it converted after that instant; an account that converted before it is left out
   (it needs no PQL).
3. **A later held-out period**: accounts that entered in the last `holdout` share of the entry
   times are the test set; the model learns from the earlier ones only.
4. **Learning** (scikit-learn): per candidate, a one-split decision tree finds the threshold that
   best separates converters (`signal >= t`); an L1-regularised logistic regression over those
   indicators (balanced classes) keeps the ones that add to the others; each kept one becomes a
   `when` rule with points proportional to its coefficient (the largest 50); the bar is the
   training score that maximises F1.
5. **Validation**: the fitted model, and the base model, go through the real backtest over the
   whole history; precision, recall and lift are measured on the held-out accounts only, with
   the funnel's definitions (`streams.backtest.funnel`).

The output is a plain model file with a comment on every number saying where it came from.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.backtest.funnel import conversion_figures
from streams.backtest.replay import history_lines
from streams.backtest.runner import Backtest
from streams.model.loader import parse_model
from streams.model.spec import Model, SignalKind, signal_key
from streams.state.account import AccountState

DAY_MS = 86_400_000
MAX_POINTS = 50


@dataclass
class Observation:
    account: str
    entered: int
    converted: int | None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rule:
    signal: str
    threshold: int
    points: int
    coefficient: float
    above: tuple[int, int]  # (converted, accounts) at or above the threshold, training
    below: tuple[int, int]


@dataclass
class FitResult:
    model_text: str
    rules: list[Rule]
    bar: int
    train: int
    test: int
    split_at: int
    metrics: dict[str, dict[str, Any]]  # "fitted" / "base" -> held-out precision, recall, lift


def _slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return s if s and not s[0].isdigit() else f"e_{s}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def event_counts(paths: Sequence[str | Path]) -> Counter[str]:
    """Track event names by how many lines carry them (a cheap first pass)."""
    import orjson

    counts: Counter[str] = Counter()
    for _, line in history_lines(paths, None):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("type", "track") == "track":
            name = obj.get("event")
            if isinstance(name, str):
                counts[name] += 1
    return counts


def candidate_model(
    events: Counter[str], exclude: Iterable[str], top: int, base: Model | None
) -> tuple[str, dict[str, str]]:
    """The YAML of a model whose signals are the candidates (it decides nothing), and each
    candidate's definition as written there."""
    skip = set(exclude)
    names = [e for e, _ in events.most_common() if e not in skip][:top]
    defs: dict[str, str] = {}
    for e in names:
        slug = _slug(e)
        while f"{slug}_7d" in defs:
            slug += "_"
        for days in (7, 30):
            defs[f"{slug}_{days}d"] = f"{{count: {_quote(e)}, window: {days}d}}"
    defs["seats_7d"] = "{distinct_users: any, window: 7d}"
    defs["active_days_14d"] = "{active_days: any, window: 14d}"
    if base is not None and base.source_path:
        written = yaml.safe_load(Path(base.source_path).read_text(encoding="utf-8"))["signals"]
        seen = {_definition(d) for d in defs.values()}
        for sig in base.signals:
            d = json.dumps(written[sig.name])  # JSON is YAML
            if sig.kind in (SignalKind.TRAIT, SignalKind.USERS_WITH_TRAIT):
                continue
            if _definition(d) not in seen:  # not one of the candidates already
                defs[f"base_{sig.name}"] = d
    lines = ["name: fit-candidates", "version: 1", "signals:"]
    lines += [f"  {name}: {d}" for name, d in defs.items()]
    lines += ["qualify:", f'  when: "{next(iter(defs))} < 0"']  # never: it only observes
    return "\n".join(lines) + "\n", defs


def _definition(text: str) -> str:
    """A signal definition, whatever its name and spelling (to drop repeated candidates)."""
    model = parse_model(f"name: d\nversion: 1\nsignals:\n  x: {text}\nqualify: {{when: x}}\n")
    return signal_key(model.signals[0])


class _Snapshots(Backtest):
    """A backtest that observes each account once, at its `at` instant, and applies nothing
    after it (so nothing later can leak into what it knew)."""

    def __init__(self, model: Model, at: dict[str, int]) -> None:
        super().__init__(model, received_by_ms=None)
        self.at = at
        self.taken: dict[str, dict[str, Any]] = {}

    def _apply(self, account: str, ev: Any, line_no: int) -> None:
        when = self.at.get(account)
        if when is None:
            return
        if ev.ts >= when:
            self._take(account)
            return
        super()._apply(account, ev, line_no)

    def _take(self, account: str) -> None:
        if account in self.taken:
            return
        when = self.at[account]
        state: AccountState | None = self.states.get(account)
        if state is None:
            self.taken[account] = {}
            return
        self.scorer.absorb_until(state, when)
        if when > state.clock:
            state.clock = when
        self.taken[account] = dict(self.scorer.plan.values(state))

    def advance_watermark(self, until: int) -> None:
        self.watermark = max(self.watermark, until)  # no decisions: nothing to advance

    def finish_all(self) -> dict[str, dict[str, Any]]:
        self.finish()
        for account in self.at:
            self._take(account)
        return self.taken


def _funnel_pass(
    model: Model, paths: Sequence[str | Path], conversion_event: str, signup_event: str | None
) -> tuple[dict[str, int], dict[str, int]]:
    bt = Backtest(model, conversion_event=conversion_event, received_by_ms=None)
    bt.summary.signup_event = signup_event
    for n, line in history_lines(paths, None):
        bt.feed_line(line, n)
    bt.finish()
    return dict(bt.summary.entered), dict(bt.summary.converted)


def _metrics(
    model: Model,
    paths: Sequence[str | Path],
    conversion_event: str,
    signup_event: str | None,
    accounts: set[str],
) -> dict[str, Any]:
    """Precision, recall and lift of `model` over `accounts` (the held-out ones), from the real
    backtest over the whole history."""
    bt = Backtest(model, conversion_event=conversion_event, received_by_ms=None)
    bt.summary.signup_event = signup_event
    for n, line in history_lines(paths, None):
        bt.feed_line(line, n)
    bt.finish()
    s = bt.summary
    conv = conversion_figures(accounts, s.first_pql, s.converted)
    return {
        "accounts": len(accounts),
        "pqls": conv["pql"]["accounts"],
        "converted": conv["pql"]["converted"] + conv["non_pql"]["converted"],
        "non_pql_converted": conv["non_pql"]["converted"],
        "precision": conv["precision"],
        "recall": conv["recall"],
        "lift": conv["lift"],
        "lift_interval": conv["lift_interval"],
    }


def fit(
    paths: Sequence[str | Path],
    conversion_event: str,
    *,
    signup_event: str | None = None,
    base: Model | None = None,
    horizon_ms: int = 14 * DAY_MS,
    holdout: float = 0.3,
    top: int = 12,
    name: str = "fitted",
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    say = progress or (lambda _msg: None)
    say("reading event names")
    counts = event_counts(paths)
    exclude = {conversion_event} | ({signup_event} if signup_event else set())
    text, defs = candidate_model(counts, exclude, top, base)
    names = list(defs)
    candidates = parse_model(text)
    say("finding when each account entered and converted")
    entered, converted = _funnel_pass(candidates, paths, conversion_event, signup_event)
    at = {a: t + horizon_ms for a, t in entered.items()}
    observed = {a for a in at if a not in converted or converted[a] >= at[a]}
    say(f"observing {len(observed)} accounts {horizon_ms // DAY_MS} days after entry")
    snaps = _Snapshots(candidates, {a: at[a] for a in observed})
    for n, line in history_lines(paths, None):
        snaps.feed_line(line, n)
    values = snaps.finish_all()

    order = sorted(observed, key=lambda a: (entered[a], a))
    if len(order) < 10:
        raise ValueError(f"only {len(order)} accounts to learn from: need at least 10")
    split_at = entered[order[int(len(order) * (1 - holdout))]]
    train = [a for a in order if entered[a] < split_at]
    test = [a for a in order if entered[a] >= split_at]
    y = np.array([a in converted for a in train], dtype=int)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("the training period needs converters and non-converters")

    def column(name: str, accounts: list[str]) -> Any:
        return np.array([float(values[a].get(name) or 0) for a in accounts])

    say(f"learning from {len(train)} accounts, holding out {len(test)}")
    stumps: list[tuple[str, int]] = []
    for sig in names:
        x = column(sig, train).reshape(-1, 1)
        tree = DecisionTreeClassifier(max_depth=1, class_weight="balanced", random_state=0)
        tree.fit(x, y)
        if tree.tree_.node_count < 3:
            continue
        t = math.floor(tree.tree_.threshold[0]) + 1  # x > 4.5 -> x >= 5 (counts are whole)
        above = x[:, 0] >= t
        if above.sum() == 0 or above.sum() == len(y):
            continue
        if y[above].mean() <= y[~above].mean():
            continue  # more signal means less converting: not a points rule
        if any((column(s2, train) >= t2).tolist() == above.tolist() for s2, t2 in stumps):
            continue  # splits the accounts exactly as one kept already (a 7d and a 30d twin)
        stumps.append((sig, t))
    if not stumps:
        raise ValueError("no signal separates converters from the rest in the training period")
    indicators = np.column_stack([column(s, train) >= t for s, t in stumps]).astype(float)
    lr = LogisticRegression(
        l1_ratio=1.0, solver="liblinear", C=0.5, class_weight="balanced", random_state=0
    )
    lr.fit(indicators, y)
    coefs = lr.coef_[0]
    top_coef = max((c for c in coefs if c > 0), default=0.0)
    if top_coef <= 0:
        raise ValueError("no signal adds to the odds of converting in the training period")
    rules: list[Rule] = []
    for (sig, t), c, col in zip(stumps, coefs, indicators.T, strict=True):
        points = round(MAX_POINTS * c / top_coef)
        if points < 1:
            continue  # the regression dropped it (or nearly): it adds nothing to the others
        on = col > 0
        rules.append(
            Rule(
                sig, t, points, float(c),
                (int(y[on].sum()), int(on.sum())), (int(y[~on].sum()), int((~on).sum())),
            )
        )  # fmt: skip
    rules.sort(key=lambda r: -r.points)
    scores = sum((column(r.signal, train) >= r.threshold) * r.points for r in rules)
    bar = _best_bar(scores, y)
    model_text = _write_model(name, defs, rules, bar, len(train), split_at)
    fitted = parse_model(model_text)
    say("validating on the held-out period")
    metrics = {"fitted": _metrics(fitted, paths, conversion_event, signup_event, set(test))}
    if base is not None:
        metrics["base"] = _metrics(base, paths, conversion_event, signup_event, set(test))
    return FitResult(model_text, rules, bar, len(train), len(test), split_at, metrics)


def _best_bar(scores: Any, y: Any) -> int:
    """The score threshold with the best F1 on training."""
    best, best_f1 = int(max(scores)), -1.0
    for bar in sorted({int(s) for s in scores if s > 0}):
        pred = scores >= bar
        tp = int((pred & (y == 1)).sum())
        if tp == 0:
            continue
        precision, recall = tp / int(pred.sum()), tp / int(y.sum())
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best, best_f1 = bar, f1
    return best


def _write_model(
    name: str, defs: dict[str, str], rules: list[Rule], bar: int, trained_on: int, split_at: int
) -> str:
    from streams.scoring.transitions import iso_ms

    used = sorted({r.signal for r in rules})
    lines = [
        f"# Fitted by `pql fit` from {trained_on} accounts that entered before "
        f"{iso_ms(split_at)[:10]};",
        "# every rule and number below says where it came from. Edit freely, then check it with",
        "# `pql model check` and compare it with `pql backtest`.",
        f"name: {name}",
        "version: 1",
        "description: Fitted from outcomes by pql fit.",
        "signals:",
        *(f"  {sig}: {defs[sig]}" for sig in used),
        "score:",
    ]
    for r in rules:
        ka, na = r.above
        kb, nb = r.below
        lines.append(
            f"  # {r.signal} >= {r.threshold}: {ka} of {na} training accounts converted "
            f"({_pct(ka, na)}), {kb} of {nb} below ({_pct(kb, nb)}); "
            f"coefficient {r.coefficient:.3f}"
        )
        lines.append(f'  - {{when: "{r.signal} >= {r.threshold}", points: {r.points}}}')
    lines += [
        "qualify:",
        "  # the training score with the best F1 (precision and recall balanced)",
        f'  when: "score >= {bar}"',
    ]
    return "\n".join(lines) + "\n"


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.0f}%" if n else "n/a"
