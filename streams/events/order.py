"""Event-time order: the one order in which events are applied, live and in `pql backtest`.

An account's events reach the worker from several input partitions (input keyed by user, by
device, or not at all), read at uneven speeds; the backtest reads files that may not be sorted.
Both apply events in the **canonical order** of `order_key`:

    (event time, 0 for identify/group calls or 1 for track/page/screen, messageId)

- event time first (the `timestamp`, after the clock-skew guard of `streams.events.parse`);
- at the same millisecond, who someone is (identify, group) before what they did (track), so a
  sign-up's identify/group/track burst stamped with one instant routes the same way whatever
  order it was sent in;
- then the messageId: a tie-break that does not depend on which partition or file line an
  event came from. (A group call's synthetic identify, messageId `<group id>:traits`, sorts
  right after its group call.)

`HoldBuffer` is the piece that restores that order from streams that are each in time order:
items are pushed as they arrive and `release(before)` hands back, in canonical order, every item
older than `before` — the watermark, below which no source can still deliver anything. Given
per-source watermarks that only promise what they know, any interleaving of per-source
time-ordered streams comes out exactly as the time-sorted stream (tested with hypothesis).
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

from streams.events.types import Event, EventType

OrderKey = tuple[int, int, str]

T = TypeVar("T")

_TRACK = EventType.TRACK


def order_key(ev: Event) -> OrderKey:
    return (ev.ts, 1 if ev.type is _TRACK else 0, ev.message_id)


class HoldBuffer(Generic[T]):
    """Items held until the watermark passes their event time, released in key order. Equal
    keys (a re-delivered event) come out in arrival order."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[OrderKey, int, T]] = []
        self._seq = 0

    def push(self, key: OrderKey, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (key, self._seq, item))

    def release(self, before: int) -> list[T]:
        """Every held item with event time < `before`, in canonical order."""
        heap = self._heap
        out: list[T] = []
        pop = heapq.heappop
        while heap and heap[0][0][0] < before:
            out.append(pop(heap)[2])
        return out

    def release_all(self) -> list[T]:
        out = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return out

    def oldest(self) -> int | None:
        """Event time of the oldest held item."""
        return self._heap[0][0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
