"""Event-time bucket arithmetic shared by every windowed signal.

An event at time `ts` falls in bucket `i = ts // bucket_ms`, which spans [i*b, (i+1)*b).
A bucket counts toward a window of length `w` at evaluation time `T` while its end lies inside
the window: `(i + 1) * b + w > T`. So the bucket *expires* at the instant

    expiry(i) = (i + 1) * b + w

and an event stays in its window for between `w` and `w + b` (never less than the window the
model asked for). Expiry instants are aligned to bucket boundaries, so they depend only on the
account's own events — never on when the worker happened to notice them.
"""

from __future__ import annotations

from collections.abc import Mapping


def bucket_of(ts: int, bucket_ms: int) -> int:
    return ts // bucket_ms


def expiry_of(bucket: int, bucket_ms: int, window_ms: int) -> int:
    return (bucket + 1) * bucket_ms + window_ms


def expired_keys(
    buckets: Mapping[int, float] | Mapping[str, int],
    bucket_ms: int,
    window_ms: int,
    at: int,
) -> list:
    """Keys whose bucket (the key itself, or the value for user-keyed maps) expired by `at`."""
    limit = (at - window_ms) // bucket_ms  # expiry(i) <= at  <=>  i + 1 <= (at - w) / b
    out = []
    for key, value in buckets.items():
        idx = key if isinstance(key, int) else value
        if idx + 1 <= limit:
            out.append(key)
    return out
