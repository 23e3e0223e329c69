"""Stream time for quiet accounts (see /README "Time semantics").

Stream time W is the minimum, over the input partitions that still have unread records, of each
partition's latest event time; when every partition is caught up it is the largest event time
seen. W only moves forward.

It travels *in band*. The ingest stage tracks each input partition's progress
(`InputProgress`) and, after what it read is delivered, writes it as a *mark* record into every
by-account partition (`streams.app.wire`). The account stage keeps one `StreamClock` per
by-account partition, fed only by the marks it reads there. A mark follows, in its partition,
every record forwarded from the input it describes, so stream time never overtakes an
account's own events still in flight between the stages, however far behind the account stage
is reading. Each worker's ingest marks every by-account partition, so a partition's clock also
covers input read by other workers.
"""

from __future__ import annotations

from dataclasses import dataclass

# Input partition -> (latest event time read, offset of the last record read, unread records
# remain after it): what a mark carries.
Progress = dict[int, tuple[int, int, bool]]


def stream_time(progress: Progress) -> int | None:
    """The minimum latest event time over partitions behind; if none is, the maximum."""
    if not progress:
        return None
    behind = [latest for latest, _, is_behind in progress.values() if is_behind]
    if behind:
        return min(behind)
    return max(latest for latest, _, _ in progress.values())


@dataclass(slots=True)
class _Partition:
    latest: int  # latest event time read on the partition
    offset: int  # offset of the last record read
    behind: bool  # unread records remain after it (or it is not known yet that none do)


class InputProgress:
    """The ingest stage's view of its input partitions (one thread: the ingest's poll loop)."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def observe(self, partition: int, event_ms: int, offset: int, highwater: int | None) -> None:
        """The latest record read; `highwater` from the last fetch, None if there was none yet
        (the partition then counts as behind: an unknown end is not a reached one)."""
        behind = _behind(offset, highwater)
        p = self._parts.get(partition)
        if p is None:
            self._parts[partition] = _Partition(event_ms, offset, behind)
        else:
            if event_ms > p.latest:
                p.latest = event_ms
            p.offset = offset
            p.behind = behind

    def refresh(self, highwater: dict[int, int | None]) -> None:
        """Re-check partitions marked behind against fresh high watermarks: the one seen with
        their last record may have been stale (or missing, after a restart), and a drained
        partition gets no record to say so."""
        for partition, p in self._parts.items():
            if p.behind and partition in highwater:
                p.behind = _behind(p.offset, highwater[partition])

    def behind(self) -> list[int]:
        return [partition for partition, p in self._parts.items() if p.behind]

    def forget(self, partition: int) -> None:
        self._parts.pop(partition, None)

    def snapshot(self) -> Progress:
        return {part: (p.latest, p.offset, p.behind) for part, p in self._parts.items()}


def _behind(offset: int, highwater: int | None) -> bool:
    return highwater is None or offset + 1 < highwater


class StreamClock:
    """Stream time of one by-account partition, from the marks read in it. Marks from several
    ingest instances (workers) merge per input partition, the later mark superseding; a
    partition that moved to another worker is reported by its new owner."""

    def __init__(self, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self._progress: Progress = {}
        self.value: int | None = None  # W minus the grace period; never moves back

    def merge(self, progress: Progress) -> int | None:
        """Take a mark's progress; return the (possibly advanced) stream time."""
        self._progress.update(progress)
        base = stream_time(self._progress)
        if base is not None:
            candidate = base - self.grace_ms
            if self.value is None or candidate > self.value:
                self.value = candidate
        return self.value
