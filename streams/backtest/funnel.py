"""Funnel metrics as the seeds define them, from what a backtest saw (`SummaryBuilder` collects,
`funnel` computes). Pure: numbers in, JSON-ready dicts out; the HTML report draws them.

- The funnel's entry: an account's first event named `--signup-event`, or its first event.
  Accounts never seen entering are not in it.
- Cohort: the UTC week (Monday) of the entry. PQL rate = PQLs / accounts that entered.
- Time to PQL: first qualification - entry.
- Conversion (with `--conversion-event`): PQLs that qualified at or before converting against
  the rest; each rate with a 95% Wilson interval, lift with a 95% interval (Katz, log scale).
- Revenue (with `--revenue-property`): the property of each account's first conversion event,
  totalled and averaged for PQLs and non-PQLs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def lift_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """95% interval of the rate ratio (k1/n1) / (k2/n2) (Katz): None when a count is 0."""
    if 0 in (k1, n1, k2, n2):
        return None
    log_rr = math.log((k1 / n1) / (k2 / n2))
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    return round(math.exp(log_rr - z * se), 3), round(math.exp(log_rr + z * se), 3)


def histogram(values: list[float], bins: int = 20) -> dict[str, list[Any]]:
    """Equal-width bins over [min, max]: {"edges": bins + 1 edges, "counts": bins counts}."""
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    if hi == lo:
        return {"edges": [lo, lo + 1], "counts": [len(values)]}
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [round(lo + i * width, 3) for i in range(bins + 1)], "counts": counts}


def week_of(ms: int) -> str:
    """The ISO date of the UTC Monday starting `ms`'s week."""
    day = datetime.fromtimestamp(ms / 1000, tz=UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def funnel(
    *,
    entered: Mapping[str, int],
    first_pql: Mapping[str, int],
    converted: Mapping[str, int],
    revenue: Mapping[str, float],
    conversion_event: str | None,
    revenue_property: str | None,
    signup_event: str | None,
    scores: Iterable[float],
    qualify_rules: Counter[str],
    segments_entered: Mapping[str, int],
    segment_days: Mapping[str, Counter[str]],
) -> dict[str, Any]:
    """The `funnel` section of the backtest summary (see module)."""
    in_funnel = set(entered)
    pqls = {a for a in first_pql if a in in_funnel}
    cohorts: dict[str, dict[str, int]] = {}
    for a, ts in entered.items():
        c = cohorts.setdefault(week_of(ts), {"entered": 0, "pqls": 0, "converted": 0})
        c["entered"] += 1
        c["pqls"] += a in pqls
        c["converted"] += a in converted
    ttp = [(first_pql[a] - entered[a]) / HOUR_MS for a in pqls if first_pql[a] >= entered[a]]
    out: dict[str, Any] = {
        "entry": f"first {signup_event!r} event" if signup_event else "first event",
        "accounts_entered": len(in_funnel),
        "pqls": len(pqls),
        "pql_rate": round(len(pqls) / len(in_funnel), 4) if in_funnel else None,
        "pql_rate_interval": wilson(len(pqls), len(in_funnel)),
        "cohorts": [
            {
                "week": week,
                **c,
                "pql_rate": round(c["pqls"] / c["entered"], 4),
            }
            for week, c in sorted(cohorts.items())
        ],
        "hours_to_pql": {
            "median": _round(_median(ttp)),
            "p25": _round(_quantile(ttp, 0.25)),
            "p75": _round(_quantile(ttp, 0.75)),
            "histogram": histogram(ttp),
        },
        "scores": histogram(list(scores)),
        # Most frequent first, ties by name (not by which account qualified first).
        "qualifying_rules": dict(sorted(qualify_rules.items(), key=lambda kv: (-kv[1], kv[0]))),
        "segments_entered": dict(sorted(segments_entered.items())),
        "segments_by_day": _membership(segment_days),
    }
    if conversion_event is not None:
        out["conversion"] = conversion_figures(in_funnel, first_pql, converted)
    if revenue_property is not None:
        out["revenue"] = _revenue(in_funnel, first_pql, converted, revenue, revenue_property)
    return out


def _round(v: float | None) -> float | None:
    return round(v, 2) if v is not None else None


def conversion_figures(
    accounts: set[str], first_pql: Mapping[str, int], converted: Mapping[str, int]
) -> dict[str, Any]:
    conv = {a: t for a, t in converted.items() if a in accounts}
    pql_first = {
        a for a, t in first_pql.items() if a in accounts and (a not in conv or t <= conv[a])
    }
    n1 = len(pql_first)
    k1 = sum(1 for a in pql_first if a in conv)
    n2 = len(accounts) - n1
    k2 = len(conv) - k1
    r1 = k1 / n1 if n1 else None
    r2 = k2 / n2 if n2 else None
    lead = [(conv[a] - first_pql[a]) / HOUR_MS for a in pql_first if a in conv]
    return {
        "pql": {"accounts": n1, "converted": k1, "rate": _r4(r1), "interval": wilson(k1, n1)},
        "non_pql": {"accounts": n2, "converted": k2, "rate": _r4(r2), "interval": wilson(k2, n2)},
        "lift": round(r1 / r2, 3) if r1 is not None and r2 else None,
        "lift_interval": lift_interval(k1, n1, k2, n2),
        "precision": _r4(r1),
        "recall": _r4(k1 / len(conv)) if conv else None,
        "median_lead_hours": _round(_median(lead)),
    }


def _r4(v: float | None) -> float | None:
    return round(v, 4) if v is not None else None


def _revenue(
    accounts: set[str],
    first_pql: Mapping[str, int],
    converted: Mapping[str, int],
    revenue: Mapping[str, float],
    prop: str,
) -> dict[str, Any]:
    def side(members: set[str]) -> dict[str, Any]:
        paying = [revenue[a] for a in members if a in revenue]
        total = math.fsum(paying)
        return {
            "accounts": len(members),
            "paying": len(paying),
            "total": round(total, 2),
            "per_account": round(total / len(members), 2) if members else None,
            "per_paying": round(total / len(paying), 2) if paying else None,
        }

    pql_first = {
        a
        for a, t in first_pql.items()
        if a in accounts and (a not in converted or t <= converted[a])
    }
    return {"property": prop, "pql": side(pql_first), "non_pql": side(accounts - pql_first)}


def _membership(segment_days: Mapping[str, Counter[str]]) -> dict[str, Any]:
    """Per segment, its members at the end of each day from its first entry on."""
    out: dict[str, Any] = {}
    for segment, deltas in sorted(segment_days.items()):
        if not deltas:
            continue
        days = sorted(deltas)
        start = datetime.fromisoformat(days[0]).date()
        end = datetime.fromisoformat(days[-1]).date()
        series = []
        members = 0
        day = start
        while day <= end:
            members += deltas.get(day.isoformat(), 0)
            series.append(members)
            day += timedelta(days=1)
        out[segment] = {"from": days[0], "members": series}
    return out


def day_of(ms: int) -> str:
    return _day(ms)
