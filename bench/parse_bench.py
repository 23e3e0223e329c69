"""Micro-benchmark: parse_event throughput on realistic Segment events (not a test).

    .venv/bin/python bench/parse_bench.py [N]

Builds N (default 200k) serialized events shaped like real Segment traffic — mostly track calls
with properties and a context block, some page, identify and group calls, a few without a
messageId (hashed) and a few bad ones — then times parse_event over them, best of 3 runs.
`orjson.loads` alone is timed too, as the floor the parse cannot beat.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.events.parse import parse_event  # noqa: E402
from streams.events.types import Event  # noqa: E402

EVENT_NAMES = [
    "Message Sent",
    "Channel Created",
    "File Uploaded",
    "Integration Added",
    "Invite Sent",
]
TITLES = ["Engineer", "CTO", "VP Engineering", "Designer", "PM"]


def make_events(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    out: list[bytes] = []
    for i in range(n):
        user = f"user-{rng.randrange(20_000)}"
        account = f"acct-{rng.randrange(2_000)}"
        when = start + timedelta(milliseconds=i * 37 + rng.randrange(1000))
        base: dict[str, Any] = {
            "userId": user,
            "anonymousId": f"anon-{rng.getrandbits(48):012x}",
            "messageId": f"ajs-next-{rng.getrandbits(64):016x}",
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "context": {
                "groupId": account,
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "ip": "203.0.113.9",
                "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
            },
        }
        roll = rng.random()
        if roll < 0.78:
            base |= {
                "type": "track",
                "event": rng.choice(EVENT_NAMES),
                "properties": {"channel": "general", "length": rng.randrange(400), "plan": "free"},
            }
        elif roll < 0.88:
            base |= {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}}
        elif roll < 0.95:
            base |= {"type": "identify", "traits": {"title": rng.choice(TITLES), "email": "x@y"}}
        else:
            base |= {"type": "group", "groupId": account, "traits": {"plan": "free", "seats": 5}}
        if rng.random() < 0.05:
            del base["messageId"]  # derived by hashing
        if rng.random() < 0.01:
            base["timestamp"] = "yesterday"  # rejected
        out.append(orjson.dumps(base))
    return out


def best_rate(fn: Callable[[bytes], object], data: list[bytes], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for raw in data:
            fn(raw)
        best = min(best, time.perf_counter() - t0)
    return len(data) / best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    data = make_events(n)
    accepted = sum(isinstance(parse_event(raw), Event) for raw in data)
    avg_size = sum(map(len, data)) / n
    loads_rate = best_rate(orjson.loads, data)
    parse_rate = best_rate(parse_event, data)
    print(f"{n} events, avg {avg_size:.0f} bytes, {accepted} accepted")
    print(f"orjson.loads only : {loads_rate:>12,.0f} events/s  ({1e6 / loads_rate:.2f} µs/event)")
    print(f"parse_event       : {parse_rate:>12,.0f} events/s  ({1e6 / parse_rate:.2f} µs/event)")


if __name__ == "__main__":
    main()
