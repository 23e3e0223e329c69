"""Stream time: what lets a stage apply events in event-time order (see /README "Time
semantics").

Each input partition is a *source*: its events come in time order, so once its latest event
time read is L, nothing it delivers later is older than L. Stream time W is the minimum of L
over the *active* input partitions — those with unread records, or that delivered a record
within the idleness timeout (Flink's `withIdleness`): a partition that went quiet stops holding
W after that timeout. When every partition is idle, W is the largest event time seen and
everything held may go. An assigned partition nothing was read from yet holds W at "no time"
(`NO_TIME`) until it delivers or turns idle. W only moves forward.

It travels *in band*. The ingest tracks each input partition's progress (`InputProgress`) and
writes it, after each poll, at the end of the frame of events it writes into each internal
partition (alone, every 50 ms, into a partition that got no events; `streams.app.wire`), once
the previous poll's frames are delivered. The user stage, which holds events too, relays how far
it has released (`released_progress`) into every by-account partition, after the forwards that
release made (coalesced: one frame per by-account partition for all its partitions). The
account stage keeps one `StreamClock` per by-account partition, fed only by the frames it reads
there: the ingest's progress (path `DIRECT`) covers the events the ingest sent straight to the
account, a relay (path = the by-user partition) the events routed through the user stage.
Stream time follows, in its partition, every record forwarded from the input it describes, so it
never overtakes an event still in flight between the stages, however far behind a stage is
reading, across restarts and with several workers (every ingest writes into every partition).

Events are held until W passes them and then applied in canonical order
(`streams.events.order`), which is exactly the time-sorted history's order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Input partition -> (latest event time read, offset of the last record read, active): what a
# mark carries. Marks of versions before idleness carried "unread records remain" in the third
# place, which reads as "active" here: a drained partition then counts as idle at once, as it
# did then.
Progress = dict[int, tuple[int, int, bool]]
NO_TIME = -(2**62)  # latest event time of a partition nothing was read from yet
DIRECT = -1  # the path of events (and marks) the ingest sent straight to the account stage


def stream_time(progress: Mapping[Any, tuple[int, int, bool]]) -> tuple[int, bool] | None:
    """(W, whether every partition is idle), or None without any partition."""
    if not progress:
        return None
    active = [latest for latest, _, is_active in progress.values() if is_active]
    if active:
        return min(active), False
    return max(latest for latest, _, _ in progress.values()), True


@dataclass(slots=True)
class _Partition:
    latest: int  # latest event time read on the partition (NO_TIME before any)
    offset: int  # offset of the last record read (the one before the first to read, before any)
    behind: bool  # unread records remain after it (or it is not known yet that none do)
    heard_at: float  # monotonic time the last record was read, or the partition assigned


class InputProgress:
    """The ingest stage's view of its input partitions (one thread: the ingest's poll loop)."""

    def __init__(self, idle_s: float = 3.0) -> None:
        self.idle_s = idle_s
        self._parts: dict[int, _Partition] = {}

    def assign(self, partition: int, now: float, committed: int = 0) -> None:
        """A newly assigned partition, read from offset `committed`: it holds stream time at
        "no time" until it delivers, or a fetch shows it has nothing to read and it then stays
        quiet for the idleness timeout (an unfetched backlog is not idleness)."""
        if partition not in self._parts:
            self._parts[partition] = _Partition(NO_TIME, committed - 1, True, now)

    def observe(
        self, partition: int, event_ms: int, offset: int, highwater: int | None, now: float
    ) -> None:
        """The latest record read; `highwater` from the last fetch, None if there was none yet
        (the partition then counts as behind: an unknown end is not a reached one)."""
        behind = _behind(offset, highwater)
        p = self._parts.get(partition)
        if p is None:
            self._parts[partition] = _Partition(event_ms, offset, behind, now)
        else:
            if event_ms > p.latest:
                p.latest = event_ms
            p.offset = offset
            p.behind = behind
            p.heard_at = now

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

    def next_offset(self, partition: int) -> int:
        """The offset after the last record read (where reading the partition resumes)."""
        return self._parts[partition].offset + 1

    def _active(self, p: _Partition, now: float) -> bool:
        return p.behind or now - p.heard_at < self.idle_s

    def snapshot(self, now: float) -> Progress:
        return {part: (p.latest, p.offset, self._active(p, now)) for part, p in self._parts.items()}

    def ahead(self, now: float, max_drift_ms: int) -> set[int]:
        """Partitions whose latest event time runs more than `max_drift_ms` ahead of the
        slowest active one (watermark alignment: the ingest pauses them, so what the stages
        hold stays bounded instead of buffering a whole backlog)."""
        active = {q: p.latest for q, p in self._parts.items() if self._active(p, now)}
        if len(active) < 2:
            return set()
        floor = min(active.values())
        if floor == NO_TIME:
            # A partition nothing was read from yet may hold the oldest events of all: the
            # others wait until it delivered (or, empty, turned idle).
            return {q for q, latest in active.items() if latest != NO_TIME}
        return {q for q, latest in active.items() if latest > floor + max_drift_ms}


def _behind(offset: int, highwater: int | None) -> bool:
    return highwater is None or offset + 1 < highwater


class StreamClock:
    """Stream time of one partition of a stage, from the marks read in it. Marks merge per
    (path, input partition), the later superseding: several ingest instances (workers) report
    their own partitions, and a partition that moved to another worker is reported by its new
    owner. `paths` lists the paths whose marks must all have been read before time moves at
    all (the account stage: `DIRECT` and every by-user partition), so an event routed through a
    user stage that has not reported yet is never overtaken.

    Idle hold: an idle partition that receives records again (another worker's, say) is known
    to be active only once its ingest's next mark arrives. So while any partition counts as
    idle, stream time moves no further than it had reached `idle_hold_s` ago (by this clock's
    wall time): long enough for a waking partition to report, so nothing it had is overtaken
    (the input being produced in time order). With every partition active, no hold applies."""

    def __init__(
        self, grace_ms: int, paths: tuple[int, ...] = (DIRECT,), idle_hold_s: float = 1.0
    ) -> None:
        self.grace_ms = grace_ms
        self.idle_hold_s = idle_hold_s
        self._progress: dict[tuple[int, int], tuple[int, int, bool]] = {}
        self._waiting = set(paths)
        self.value: int | None = None  # W minus the grace period; never moves back
        self.idle = False  # every source idle, now and `idle_hold_s` ago: nothing left to wait for
        # (wall time, W, every source idle) of recent merges, oldest first; the first entry is
        # the newest one at least `idle_hold_s` old.
        self._history: deque[tuple[float, int, bool]] = deque()

    def merge(self, progress: Progress, path: int = DIRECT, now: float | None = None) -> int | None:
        """Take a mark's progress; return the (possibly advanced) stream time."""
        store = self._progress
        for q, entry in progress.items():
            store[(path, q)] = entry
        if progress:  # a mark of no partition (nothing assigned yet) says nothing
            self._waiting.discard(path)
        if self._waiting:
            return self.value
        found = stream_time(store)
        if found is None:
            return self.value
        base, all_idle = found
        if any(not is_active for _, _, is_active in store.values()):  # some idle: hold back
            now = time.monotonic() if now is None else now
            history = self._history
            history.append((now, base, all_idle))
            cutoff = now - self.idle_hold_s
            while len(history) > 1 and history[1][0] <= cutoff:
                history.popleft()
            then, then_base, then_idle = history[0]
            if then > cutoff:
                return self.value  # nothing old enough yet
            base = min(base, then_base)
            all_idle = all_idle and then_idle
        else:
            self._history.clear()
        self.idle = all_idle
        candidate = base - self.grace_ms
        if base > NO_TIME and (self.value is None or candidate > self.value):
            self.value = candidate
        return self.value

    @property
    def heard_all(self) -> bool:
        """Whether every path this clock waits for has sent a mark."""
        return not self._waiting

    def releasable(self) -> int | None:
        """Events older than this may be applied: W, or past everything when all sources are
        idle (None: nothing yet)."""
        if self.value is None:
            return None
        return NO_TIME_END if self.idle else self.value


NO_TIME_END = 2**62  # "every held event": no source can still deliver an older one


def released_progress(clock: StreamClock) -> Progress:
    """What a stage that holds events tells the next one in a relayed mark: one entry, how far
    it has released (it forwards nothing older from now on, but for late events), active
    unless every source it reads is idle. The next stage takes off its own grace period, so
    the grace is added back."""
    if clock.value is None:
        return {DIRECT: (NO_TIME, -1, True)}
    return {DIRECT: (clock.value + clock.grace_ms, 0, not clock.idle)}
