"""De-duplication by messageId, per account, in the core (so `pql backtest` and the worker agree).

A CDP retrying a delivery, or a producer retrying a send, re-delivers an event with the same
`messageId`; counted twice it would inflate counts and sums. Each account state remembers the
8-byte digest (blake2b) of the messageId of every event that changed one of its signals, for
`HORIZON_MS` of the account's event time (Segment de-duplicates within 24 hours too) and at
most `MAX_IDS` of them (the oldest are forgotten first). An event whose digest is remembered is
a duplicate: not applied, counted (`pql_duplicate_events_total`, the backtest's
`duplicates_skipped`), never an error. An event that changed nothing needs no memory: applied
again, it changes nothing again.

Memory per account: 8 bytes per remembered event plus a few bytes per hour that had one, so at
most `MAX_IDS` x 8 = 16 KiB for an account with over 2,048 signal-changing events a day; an
account with 50 such events a day keeps ~420 bytes.

Layout (two fields of `AccountState`): `dedup_ids`, the digests concatenated in the order they
were remembered, and `dedup_runs`, [hour index, how many digests] runs in that same order, so
expiring is dropping whole leading runs.
"""

from __future__ import annotations

from hashlib import blake2b

from streams.state.account import AccountState

HORIZON_MS = 24 * 3_600_000
MAX_IDS = 2_048
_HOUR_MS = 3_600_000
_WIDTH = 8


def digest(message_id: str) -> bytes:
    return blake2b(message_id.encode(), digest_size=_WIDTH).digest()


def seen(state: AccountState, d: bytes) -> bool:
    ids = state.dedup_ids
    if not ids:
        return False
    start = ids.find(d)
    while start >= 0:
        if start % _WIDTH == 0:
            return True
        start = ids.find(d, start + 1)
    return False


def remember(state: AccountState, d: bytes, ts: int) -> None:
    """Remember `d` (an event at `ts`); forget what fell out of the horizon or the cap."""
    hour = ts // _HOUR_MS
    runs = state.dedup_runs
    if runs and runs[-1][0] == hour:
        runs[-1][1] += 1
    else:
        runs.append([hour, 1])
    ids = state.dedup_ids + d
    # Forget runs older than the horizon (of the account's clock), then the oldest past the cap.
    cutoff = (state.clock - HORIZON_MS) // _HOUR_MS
    drop = 0
    while len(runs) > 1 and runs[0][0] < cutoff:
        drop += runs.pop(0)[1]
    excess = len(ids) // _WIDTH - drop - MAX_IDS
    while excess > 0:
        take = min(excess, runs[0][1])
        runs[0][1] -= take
        if runs[0][1] == 0:
            runs.pop(0)
        drop += take
        excess -= take
    state.dedup_ids = ids[drop * _WIDTH :] if drop else ids
