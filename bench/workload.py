"""The reference workload: simulated team-chat events (streams.io.simulate), cached on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from streams.io import simulate

CACHE = Path(os.environ.get("PQL_BENCH_CACHE", "/tmp/pql-bench"))
SEED = 3
SAMPLE_ACCOUNTS = 200
DAY_STEPS = (0.25, 0.5, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90)


def pick_days(accounts: int, events: int) -> float:
    """The shortest simulated span whose events (estimated from 200 accounts) reach `events`."""
    sample = min(accounts, SAMPLE_ACCOUNTS)
    for days in DAY_STEPS:
        n = sum(1 for _ in simulate.generate(sample, days, seed=SEED))
        if n * accounts / sample >= events * 1.1:
            return days
    return DAY_STEPS[-1]


def events_file(
    events: int, accounts: int, say: Callable[[str], None] = print
) -> tuple[Path, int, float]:
    """(path, lines, days): the first `events` events of `accounts` accounts over `days`."""
    CACHE.mkdir(parents=True, exist_ok=True)
    days = pick_days(accounts, events)
    path = CACHE / f"team-chat-a{accounts}-d{days:g}-s{SEED}-n{events}.jsonl"
    if path.exists():
        n = sum(1 for _ in path.open("rb"))
        say(f"workload: {path} (cached, {n:,} events)")
        return path, n, days
    say(f"workload: simulating {accounts:,} accounts over {days:g} days, first {events:,} events")
    tmp = path.with_suffix(".part")
    n = 0
    with tmp.open("w") as out:
        for line in simulate.lines(accounts, days, seed=SEED, bad_ratio=0.0):
            out.write(line + "\n")
            n += 1
            if n % 100_000 == 0:
                say(f"  {n:,} events written")
            if n >= events:
                break
    tmp.rename(path)
    say(f"workload: {path} ({n:,} events)")
    return path, n, days
