"""When to try a delivery again, and how long to wait: exponential backoff with full jitter,
and a 429's `Retry-After` honoured (seconds or an HTTP date), both capped.

Pure: the service passes its clock and random source, so the schedule is testable.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

# Statuses worth another attempt: the receiver may accept the same request later. Any other
# 4xx means the request itself is wrong (bad URL, rejected payload): retrying cannot help.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # in all, the first included; then the dead-letter topic
    base_s: float = 0.5  # the first backoff's ceiling
    cap_s: float = 30.0  # no backoff ceiling above this
    retry_after_cap_s: float = 300.0  # a Retry-After longer than this is cut to it

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): full jitter over
        an exponentially growing ceiling (AWS's "full jitter": no herd of synchronised
        retries)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)

    def wait(self, attempt: int, retry_after: str | None, now: float, rng: random.Random) -> float:
        """The wait after a failed attempt: the receiver's Retry-After when it sent one (a 429
        or 503), else the backoff."""
        told = parse_retry_after(retry_after, now) if retry_after else None
        if told is not None:
            return min(told, self.retry_after_cap_s)
        return self.backoff(attempt, rng)

    def total_s(self) -> float:
        """The longest a message can take from its first attempt to its dead letter, waits
        only (the consumer's max.poll.interval must exceed it, plus request timeouts)."""
        return self.retry_after_cap_s * max(0, self.attempts - 1)


def parse_retry_after(value: str, now: float) -> float | None:
    """`Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` -> seconds from
    `now` (epoch seconds), never negative; None when unreadable."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def should_retry(status: int | None) -> bool:
    """None: no response (timeout, connection refused or reset)."""
    return status is None or status in RETRY_STATUSES
