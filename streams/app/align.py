"""Event-time alignment for one partition of a stage (the user stage and the account stage).

Events arrive from several input partitions at uneven speeds. Each stage partition keeps a
`StreamClock` (fed by the marks read in it, `streams.app.watermark`) and holds every event that
stream time has not passed yet in a `HoldBuffer`; when a mark moves stream time, the held events
older than it are released in canonical order (`streams.events.order`) and applied — exactly the
order of the time-sorted history. An event that arrives after stream time passed it (its input
partition was more out of order than the grace period, or was idle and woke up) is applied at
once: the late path, counted by the account stage.

At-least-once: a record is acked only when none of its events is still held and what it caused
is delivered (the stage's flush). Acks go strictly in record order (Faust commits the first run
of acked offsets, so a gap would commit past a held record): a held record holds back the acks
of every record after it, and a crash re-reads from the oldest record with held events — those
already applied are skipped by the account state's positions, the rest are held again.

Memory: what is held is bounded by the ingest's watermark alignment (input partitions running
more than `--max-drift` ahead are paused) and exposed as `pql_held_events`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streams.app.watermark import StreamClock
from streams.events.order import HoldBuffer, OrderKey

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Entry:
    """A record read and not acked yet."""

    record: Any
    held: int = 0  # how many of its events are still held


class Aligned(Generic[T]):
    def __init__(self, clock: StreamClock) -> None:
        self.clock = clock
        self.held: HoldBuffer[tuple[T, Entry]] = HoldBuffer()
        self.pending: deque[Entry] = deque()

    def entry(self, record: Any) -> Entry:
        """Take `record` into the ack queue."""
        entry = Entry(record)
        self.pending.append(entry)
        return entry

    def due(self, ts: int) -> bool:
        """Whether an event at `ts` may be applied now (stream time has passed it)."""
        until = self.clock.releasable()
        return until is not None and ts < until

    def hold(self, key: OrderKey, item: T, entry: Entry) -> None:
        self.held.push(key, (item, entry))
        entry.held += 1

    def release(self, limit: int | None = None) -> list[tuple[T, Entry]]:
        """The held events stream time has passed (and older than `limit`, if given), in
        canonical order. The caller applies each and then calls `done(entry)`."""
        until = self.clock.releasable()
        if until is None or not self.held:
            return []
        if limit is not None and limit < until:
            until = limit
        return self.held.release(until)

    @staticmethod
    def done(entry: Entry) -> None:
        entry.held -= 1

    def ackable(self) -> list[Any]:
        """The records, oldest first, that may be acked now: the leading ones nothing is held
        of (call once what they caused is delivered)."""
        out = []
        pending = self.pending
        while pending and pending[0].held == 0:
            out.append(pending.popleft().record)
        return out

    def __len__(self) -> int:
        return len(self.held)
