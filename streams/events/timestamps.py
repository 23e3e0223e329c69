"""ISO-8601 event timestamps -> epoch milliseconds, strictly and fast.

Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction][Z | +HH:MM | -HH:MM]` — RFC 3339's date-time, except
that the offset may be left out, and then the time is read as UTC (Segment libraries send `Z`,
hand-written fixtures often omit it). Fractions beyond microseconds are truncated; milliseconds
are floored. Leap seconds (`:60`) are refused.

`datetime.fromisoformat` alone is too lenient for an input contract (since 3.11 it takes
`2024-01-01`, `20240101T100000`, week dates, `,5` fractions, `+0100`, `.Z`...), so a precompiled
regex fixes the *shape* and `fromisoformat` (C) then checks the *calendar* (no Feb 30, no hour
24). Measured against hand-written index checks and `dt.timestamp()` arithmetic, this pair plus
one timedelta subtraction was the fastest (~1 µs).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["iso_to_epoch_ms", "ISO_SHAPE"]

ISO_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # date (fromisoformat checks the calendar)
    r"T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"  # time (fromisoformat checks the ranges)
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"  # offset: fromisoformat would take +00:60
)
_shape = ISO_SHAPE.fullmatch
_fromiso = datetime.fromisoformat
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def iso_to_epoch_ms(text: str) -> int | None:
    """Epoch milliseconds (UTC) of an ISO-8601 date-time string, or None when it is not one.

    Integer arithmetic on the timedelta, never `timestamp() * 1000`, so `.123Z` stays 123 ms
    rather than 122.99999.
    """
    if _shape(text) is None:
        return None
    try:
        dt = _fromiso(text)
    except ValueError:
        return None
    delta = (dt - _EPOCH_NAIVE) if dt.tzinfo is None else (dt - _EPOCH_AWARE)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
