"""Window and bucket durations ("30d", "12h", "15m", "45s", "2w") in milliseconds.

Windows are kept as event-time buckets; the bucket size bounds both state size (about 24 buckets
per window) and how precisely a window's edge is honoured, so it is derived here once for
everyone (state, backtest) rather than re-derived in each consumer.
"""

from __future__ import annotations

import re

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

UNITS_MS: dict[str, int] = {
    "s": SECOND_MS,
    "m": MINUTE_MS,
    "h": HOUR_MS,
    "d": DAY_MS,
    "w": WEEK_MS,
}

# Candidate default bucket sizes, ascending. The default is the largest one <= window / 24.
BUCKET_STEPS_MS: tuple[int, ...] = (
    SECOND_MS,
    10 * SECOND_MS,
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
)

_DURATION = re.compile(r"([0-9]+)([smhdw])")


class DurationError(ValueError):
    """A duration that is not `<positive integer><unit>`."""


def parse_duration(text: object) -> int:
    """Parse "30d" / "12h" / "15m" / "45s" / "2w" into milliseconds (always > 0)."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration like '30d' (units s, m, h, d, w), got {text!r}")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DurationError(
            f"invalid duration {text!r}: expected a whole number and a unit, "
            "like '45s', '15m', '12h', '30d' or '2w'"
        )
    amount = int(match.group(1))
    if amount <= 0:
        raise DurationError(f"invalid duration {text!r}: must be greater than zero")
    return amount * UNITS_MS[match.group(2)]


def default_bucket_ms(window_ms: int) -> int:
    """The largest standard bucket <= window/24, so a window spans at least ~24 buckets."""
    target = window_ms / 24
    best = BUCKET_STEPS_MS[0]
    for step in BUCKET_STEPS_MS:
        if step <= target:
            best = step
    return best


def format_duration(ms: int) -> str:
    """The shortest exact form of `ms` in the largest unit that divides it (for messages)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = UNITS_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
