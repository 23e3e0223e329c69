"""Stream time for quiet accounts (see /README "Time semantics").

W is the minimum, over the partitions this worker reads that still have unread records, of each
partition's latest event time; when every partition is caught up it is the largest event time
seen. It is taken over both the input topic and the by-account topic (records between stages
are in flight), then held back by a grace period. W only moves forward.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Progress:
    latest: int  # latest event time read on the partition
    offset: int  # offset of the last record read
    behind: bool  # unread records remain after it


class Watermark:
    def __init__(self, grace_ms: int) -> None:
        # Written by the ingest process (through `replace`), read by the Faust event loop.
        self._lock = threading.Lock()
        self.grace_ms = grace_ms
        self._parts: dict[tuple[str, int], _Progress] = {}
        self._value: int | None = None

    def observe(
        self, topic: str, partition: int, event_ms: int, offset: int, highwater: int | None
    ) -> None:
        behind = highwater is not None and offset + 1 < highwater
        with self._lock:
            p = self._parts.get((topic, partition))
            if p is None:
                self._parts[(topic, partition)] = _Progress(event_ms, offset, behind)
            else:
                if event_ms > p.latest:
                    p.latest = event_ms
                p.offset = offset
                p.behind = behind

    def refresh(self, highwater: Callable[[str, int], int | None]) -> None:
        """Re-check partitions marked behind: the high watermark seen with their last record
        may have been stale, and a drained partition gets no record to say so."""
        with self._lock:
            stale = [(key, p) for key, p in self._parts.items() if p.behind]
        for (topic, partition), p in stale:
            hw = highwater(topic, partition)
            p.behind = hw is not None and p.offset + 1 < hw

    def snapshot(self, topic: str) -> dict[int, tuple[int, int, bool]]:
        """Partition -> (latest event time, offset, behind) of one topic, to hand to another
        process's `replace`."""
        with self._lock:
            return {
                part: (p.latest, p.offset, p.behind)
                for (t, part), p in self._parts.items()
                if t == topic
            }

    def replace(self, topic: str, parts: dict[int, tuple[int, int, bool]]) -> None:
        """Take over one topic's progress from a `snapshot` (partitions absent are forgotten);
        the value already reached never moves back."""
        with self._lock:
            for key in [k for k in self._parts if k[0] == topic]:
                del self._parts[key]
            for part, (latest, offset, behind) in parts.items():
                self._parts[(topic, part)] = _Progress(latest, offset, behind)

    def forget(self, topic: str, partition: int) -> None:
        with self._lock:
            self._parts.pop((topic, partition), None)

    def current(self) -> int | None:
        with self._lock:
            parts = list(self._parts.values())
        if not parts:
            return self._value
        behind = [p.latest for p in parts if p.behind]
        base = min(behind) if behind else max(p.latest for p in parts)
        candidate = base - self.grace_ms
        if self._value is None or candidate > self._value:
            self._value = candidate
        return self._value
