"""Durations and default bucket sizing."""

from __future__ import annotations

import pytest

from streams.model.durations import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    WEEK_MS,
    DurationError,
    default_bucket_ms,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30d", 30 * DAY_MS),
        ("12h", 12 * HOUR_MS),
        ("15m", 15 * MINUTE_MS),
        ("45s", 45 * SECOND_MS),
        ("2w", 2 * WEEK_MS),
        ("1s", SECOND_MS),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["30", "d", "30x", "0d", "-1d", "1.5h", "30 days", "", 30, None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("window", "bucket"),
    [
        (30 * DAY_MS, DAY_MS),  # 1.25d per bucket -> 1d
        (90 * DAY_MS, DAY_MS),  # capped at the largest step
        (14 * DAY_MS, 12 * HOUR_MS),  # 14h -> 12h
        (7 * DAY_MS, 6 * HOUR_MS),  # 7h -> 6h
        (DAY_MS, HOUR_MS),  # exactly 1h
        (12 * HOUR_MS, 30 * MINUTE_MS),
        (HOUR_MS, MINUTE_MS),  # 2.5m -> 1m
        (10 * MINUTE_MS, 10 * SECOND_MS),  # 25s -> 10s
        (SECOND_MS, SECOND_MS),  # never below 1s
        (45 * SECOND_MS, SECOND_MS),
    ],
)
def test_default_bucket(window: int, bucket: int) -> None:
    assert default_bucket_ms(window) == bucket


def test_format_duration_uses_largest_exact_unit() -> None:
    assert format_duration(2 * WEEK_MS) == "2w"
    assert format_duration(36 * HOUR_MS) == "36h"
    assert format_duration(90 * SECOND_MS) == "90s"
    assert format_duration(1500) == "1500ms"
