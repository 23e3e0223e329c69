"""Funnel metrics (`streams.backtest.funnel`): the statistics on known values, and the funnel
over a crafted history."""

from __future__ import annotations

from collections import Counter

import pytest

from streams.backtest.funnel import funnel, histogram, lift_interval, week_of, wilson
from tests.unit.scoring.util import DAY, HOUR, T0


def test_wilson_intervals() -> None:
    assert wilson(0, 0) is None
    assert wilson(0, 10) == (0.0, 0.2775)
    assert wilson(10, 10) == (0.7225, 1.0)
    lo, hi = wilson(30, 100)  # type: ignore[misc]
    assert lo == pytest.approx(0.2189, abs=1e-4) and hi == pytest.approx(0.3958, abs=1e-4)


def test_lift_interval_contains_the_lift_and_needs_counts() -> None:
    lo, hi = lift_interval(30, 100, 10, 100)  # type: ignore[misc]
    assert (lo, hi) == (1.551, 5.803)  # Katz: 3 exp(±1.96 × 0.3367)
    assert lift_interval(0, 100, 10, 100) is None


def test_histogram_and_weeks() -> None:
    h = histogram([0, 1, 2, 3, 4, 10], bins=5)
    assert h == {"edges": [0, 2, 4, 6, 8, 10], "counts": [2, 2, 1, 0, 1]}
    assert histogram([3, 3]) == {"edges": [3, 4], "counts": [2]}
    assert histogram([]) == {"edges": [], "counts": []}
    assert week_of(T0) == "2026-01-05" and week_of(T0 + 6 * DAY + 23 * HOUR) == "2026-01-05"
    assert week_of(T0 + 7 * DAY) == "2026-01-12"


def test_a_funnel_over_a_crafted_history() -> None:
    # 4 accounts enter in week 1, 2 in week 2; a, b, e become PQLs; a and c convert, a after it
    # qualified (counts for the PQLs), c without; b's qualification came after x converted.
    entered = {"a": T0, "b": T0, "c": T0 + DAY, "d": T0 + DAY, "e": T0 + 7 * DAY, "f": T0 + 8 * DAY}
    first_pql = {"a": T0 + 10 * HOUR, "b": T0 + 30 * HOUR, "e": T0 + 7 * DAY + 2 * HOUR, "z": T0}
    converted = {"a": T0 + 2 * DAY, "c": T0 + 3 * DAY, "b": T0 + HOUR}
    f = funnel(
        entered=entered,
        first_pql=first_pql,
        converted=converted,
        revenue={"a": 100.0, "c": 40.0, "b": 10.0},
        conversion_event="Subscribed",
        revenue_property="mrr",
        signup_event="Signed Up",
        scores=[0, 50, 120],
        qualify_rules=Counter({"x": 2}),
        segments_entered={"s": 1},
        segment_days={"s": Counter({"2026-01-05": 2, "2026-01-07": -1})},
    )
    assert f["entry"] == "first 'Signed Up' event"
    assert (f["accounts_entered"], f["pqls"], f["pql_rate"]) == (6, 3, 0.5)
    assert f["cohorts"] == [
        {"week": "2026-01-05", "entered": 4, "pqls": 2, "converted": 3, "pql_rate": 0.5},
        {"week": "2026-01-12", "entered": 2, "pqls": 1, "converted": 0, "pql_rate": 0.5},
    ]
    assert f["hours_to_pql"]["median"] == 10.0  # 10, 30 and 2 hours
    conv = f["conversion"]
    # PQLs first: a, e (b qualified after converting); a converted: 1/2; non-PQLs b, c, d, f:
    # b and c converted: 2/4.
    assert conv["pql"] | {"interval": None} == {
        "accounts": 2, "converted": 1, "rate": 0.5, "interval": None
    }  # fmt: skip
    assert conv["non_pql"]["accounts"] == 4 and conv["non_pql"]["converted"] == 2
    assert conv["lift"] == 1.0 and conv["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert conv["median_lead_hours"] == 38.0
    assert f["revenue"]["pql"] == {
        "accounts": 2, "paying": 1, "total": 100.0, "per_account": 50.0, "per_paying": 100.0
    }  # fmt: skip
    assert f["revenue"]["non_pql"]["total"] == 50.0
    assert f["segments_by_day"] == {"s": {"from": "2026-01-05", "members": [2, 2, 1]}}
    assert f["scores"]["counts"][0] == 1 and sum(f["scores"]["counts"]) == 3
