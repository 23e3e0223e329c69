"""What a PM needs from a backtest: how many accounts became PQLs, how fast, and — given a
conversion event — whether becoming a PQL predicted converting.

Definitions (also in the README):
- an account is *seen* once one of its events was applied;
- an account *became a PQL* at the `occurred_at` of its first `qualified` transition;
- it *converted* at the first event named by `--conversion-event`;
- for the conversion figures an account counts as a PQL only if it became one at or before it
  converted (a PQL flagged after the sale could not have helped sales);
- precision = PQLs that then converted / PQLs; recall = converters that were PQLs first /
  converters; lift = conversion rate of PQLs / conversion rate of non-PQLs;
- lead time = conversion time - PQL time, for PQLs that converted.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams.backtest.funnel import day_of, funnel

HOUR_MS = 3_600_000
_COUNTERS = (
    "kinds",
    "segments_entered",
    "rejected",
    "rejected_applied",
    "adjusted",
    "qualify_rules",
)
_NOT_JSON_TYPED = (*_COUNTERS, "pql_now", "segment_days")


@dataclass
class SummaryBuilder:
    conversion_event: str | None = None
    signup_event: str | None = None  # the funnel's entry (None: an account's first event)
    revenue_property: str | None = None  # on the conversion event
    first_seen: dict[str, int] = field(default_factory=dict)
    first_pql: dict[str, int] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)
    pql_now: set[str] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)
    segments_entered: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # by parsing or routing
    rejected_applied: Counter[str] = field(default_factory=Counter)  # by an account's scoring
    events_read: int = 0
    events_applied: int = 0
    late_applied: int = 0
    duplicates: int = 0  # events skipped: their account had applied that messageId already
    out_of_order: int = 0  # read after later events had been applied (beyond max_disorder)
    adjusted: Counter[str] = field(default_factory=Counter)  # timestamps from wrong clocks
    # The funnel (`streams.backtest.funnel`).
    entered: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, float] = field(default_factory=dict)
    qualify_rules: Counter[str] = field(default_factory=Counter)
    segment_days: dict[str, Counter[str]] = field(default_factory=dict)

    def on_event(
        self,
        account_id: str,
        ts: int,
        name: str | None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.events_applied += 1
        if account_id not in self.first_seen:
            self.first_seen[account_id] = ts
        if account_id not in self.entered and (
            self.signup_event is None or name == self.signup_event
        ):
            self.entered[account_id] = ts
        if name is not None and name == self.conversion_event and account_id not in self.converted:
            self.converted[account_id] = ts
            if self.revenue_property is not None and properties:
                value = properties.get(self.revenue_property)
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                ):
                    self.revenue[account_id] = float(value)

    def on_transition(self, t: dict[str, Any], occurred_at_ms: int) -> None:
        kind = t["kind"]
        self.kinds[kind] += 1
        account = t["account_id"]
        if kind == "qualified":
            self.pql_now.add(account)
            if account not in self.first_pql:
                self.first_pql[account] = occurred_at_ms
                self.qualify_rules.update(r["rule"] for r in t["reasons"])
        elif kind == "disqualified":
            self.pql_now.discard(account)
        elif kind == "segment_entered":
            self.segments_entered[t["segment"]] += 1
        if kind in ("segment_entered", "segment_exited"):
            days = self.segment_days.setdefault(t["segment"], Counter())
            days[day_of(occurred_at_ms)] += 1 if kind == "segment_entered" else -1

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON values (a shard's part, `streams.backtest.shards`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["pql_now"] = sorted(self.pql_now)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SummaryBuilder:
        # Only the JSON-typed fields through the constructor (the compiled core checks them).
        b = cls(**{k: v for k, v in data.items() if k not in _NOT_JSON_TYPED})
        for name in _COUNTERS:
            setattr(b, name, Counter(data[name]))
        b.pql_now = set(data["pql_now"])
        b.segment_days = {k: Counter(v) for k, v in data["segment_days"].items()}
        return b

    def merge(self, other: SummaryBuilder) -> None:
        """Add a shard's figures (`streams.backtest.shards`): its accounts are its own, its
        counters add up (a shard reports lines read, parse and routing rejects only once)."""
        self.first_seen.update(other.first_seen)
        self.first_pql.update(other.first_pql)
        self.converted.update(other.converted)
        self.entered.update(other.entered)
        self.revenue.update(other.revenue)
        self.pql_now |= other.pql_now
        for total, part in (
            (self.kinds, other.kinds),
            (self.segments_entered, other.segments_entered),
            (self.rejected, other.rejected),
            (self.rejected_applied, other.rejected_applied),
            (self.adjusted, other.adjusted),
            (self.qualify_rules, other.qualify_rules),
        ):
            total.update(part)
        for segment, days in other.segment_days.items():
            self.segment_days.setdefault(segment, Counter()).update(days)
        self.events_read += other.events_read
        self.events_applied += other.events_applied
        self.late_applied += other.late_applied
        self.duplicates += other.duplicates
        self.out_of_order += other.out_of_order

    def build(self, elapsed_s: float | None = None, scores: Iterable[float] = ()) -> dict[str, Any]:
        """`scores`: every account's score at the end (the funnel's score distribution)."""
        accounts = len(self.first_seen)
        pqls = len(self.first_pql)
        ttp = [
            self.first_pql[a] - self.first_seen[a] for a in self.first_pql if a in self.first_seen
        ]
        out: dict[str, Any] = {
            "events_read": self.events_read,
            "events_applied": self.events_applied,
            "events_rejected": dict(sorted((self.rejected + self.rejected_applied).items())),
            "late_events_applied": self.late_applied,
            "duplicates_skipped": self.duplicates,
            "events_out_of_order": self.out_of_order,
            "timestamps_adjusted": dict(sorted(self.adjusted.items())),
            "accounts_seen": accounts,
            "pql_accounts": pqls,
            "pql_rate": _ratio(pqls, accounts),
            "pql_at_end": len(self.pql_now),
            "median_hours_first_event_to_pql": _median_hours(ttp),
            "transitions": dict(sorted(self.kinds.items())),
            "segments_entered": dict(sorted(self.segments_entered.items())),
        }
        if self.conversion_event is not None:
            out["conversion"] = self._conversion(accounts)
        out["funnel"] = funnel(
            entered=self.entered,
            first_pql=self.first_pql,
            converted=self.converted,
            revenue=self.revenue,
            conversion_event=self.conversion_event,
            revenue_property=self.revenue_property,
            signup_event=self.signup_event,
            scores=scores,
            qualify_rules=self.qualify_rules,
            segments_entered=self.segments_entered,
            segment_days=self.segment_days,
        )
        if elapsed_s is not None:
            out["elapsed_seconds"] = round(elapsed_s, 3)
            out["events_per_second"] = round(self.events_read / elapsed_s) if elapsed_s else None
        return out

    def _conversion(self, accounts: int) -> dict[str, Any]:
        conv = self.converted
        pql_first = {a for a, t in self.first_pql.items() if a not in conv or t <= conv[a]}
        non_pql = accounts - len(pql_first)
        pql_conv = sum(1 for a in pql_first if a in conv)
        non_pql_conv = len(conv) - pql_conv
        rate_pql = _ratio(pql_conv, len(pql_first))
        rate_non = _ratio(non_pql_conv, non_pql)
        lead = [conv[a] - self.first_pql[a] for a in pql_first if a in conv]
        return {
            "event": self.conversion_event,
            "converted_accounts": len(conv),
            "pqls_before_conversion": len(pql_first),
            "conversion_rate_pql": rate_pql,
            "conversion_rate_non_pql": rate_non,
            "lift": round(rate_pql / rate_non, 3) if rate_pql is not None and rate_non else None,
            "precision": rate_pql,
            "recall": _ratio(pql_conv, len(conv)),
            "median_hours_pql_to_conversion": _median_hours(lead),
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _median_hours(ms: list[int]) -> float | None:
    return round(statistics.median(ms) / HOUR_MS, 2) if ms else None
