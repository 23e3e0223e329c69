"""The account stage: scores frames of events against per-account state kept in a
RocksDB-backed Faust table, with write-behind batching and at-least-once delivery.

- Decoded states live in an in-memory cache; an event updates its cached state and marks the
  account dirty (no table write per event).
- Every `flush_interval_s` or `flush_max_events` (checked on every record, so a quiet partition
  is flushed too) the dirty states are encoded and staged at once (a consistent cut); then, in
  the background while the agent goes on, every transition sent so far is delivered, then each
  dirty account's one changelog record, and only then are the records the cut covers acked so
  Faust may commit them (`flush`). One such commit is in flight at a time.
- Stream time comes in band, after the events of each frame (`streams.app.wire`: the ingest's
  progress and the user stage's relays) and feeds the partition's `StreamClock`; events are held
  until stream time passes them, then applied in canonical event-time order (`streams.app.align`),
  and quiet accounts are advanced to it.
- Every state carries, per (input partition, path), the highest position applied to it, so an
  event re-sent or re-read after a crash is skipped if the restored state holds it and applied
  otherwise: never counted twice, never lost; its transitions are re-emitted with the same ids.

A crash costs re-reading the records since the last commit.

The write-behind lives in `streams.app.write_behind`, the model switches and shadow starts in
`streams.app.lifecycle.sweeps`, what is kept per partition in `streams.app.partition`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from streams.app.align import Entry
from streams.app.dlq import event_json
from streams.app.funnel import LiveFunnel
from streams.app.ingest.config import partition_of
from streams.app.lifecycle.sweeps import ModelSweeps
from streams.app.lifecycle.versions import (
    MODEL_KEY,
    SHADOWS_KEY,
    Versions,
    decode_version,
    is_control_key,
)
from streams.app.membership import Membership
from streams.app.partition import PartitionWork
from streams.app.table_writer import StateTable
from streams.app.watermark import DIRECT, StreamClock
from streams.app.wire import decode
from streams.app.write_behind import WriteBehind
from streams.events.codec import decode_event
from streams.events.order import order_key
from streams.events.types import Event, Reject
from streams.scoring.engine import Scorer
from streams.scoring.shadow import ShadowStart
from streams.state.account import AccountState

log = logging.getLogger(__name__)


class AccountStage(ModelSweeps, WriteBehind):
    """Framework-light: the Faust agent hands it records; it talks to the table, the output
    and the DLQ through the callables it is given (so it stays readable and testable)."""

    def __init__(
        self,
        scorer: Scorer,
        table: StateTable,  # the Faust table of account id -> state bytes
        send_transition: Callable[[str, bytes], None],
        send_dlq: Callable[[bytes, Reject, Event], Awaitable[Any]],
        flush_producer: Callable[[], Awaitable[None]],
        partitions: int,
        flush_interval_s: float,
        flush_max_events: int,
        on_transition: Callable[[dict[str, Any], float], None] | None = None,
        on_late: Callable[[bool], None] | None = None,
        advance_idle_s: float = 5.0,
        cache_max_accounts: int = 200_000,
        grace_ms: int = 0,
        mark_paths: tuple[int, ...] = (DIRECT,),
        idle_hold_s: float = 1.0,
        on_duplicate: Callable[[], None] | None = None,
        versions: Versions | None = None,
        send_shadow: Callable[[str, bytes], None] | None = None,
        on_shadow_transition: Callable[[dict[str, Any]], None] | None = None,
        funnel: LiveFunnel | None = None,
    ) -> None:
        self.scorer = scorer  # the first model's (every version reads the same state)
        self.versions = versions or Versions(scorer)
        self.mark_paths = mark_paths  # whose marks stream time waits for (see StreamClock)
        self.idle_hold_s = idle_hold_s
        self.on_duplicate = on_duplicate
        self.codec = scorer.codec
        self.table = table
        self.send_transition = send_transition
        self.send_shadow = send_shadow  # the shadow models' transitions (their own topic)
        self.on_shadow_transition = on_shadow_transition
        self.funnel = funnel  # the live funnel metrics, when configured
        self.send_dlq = send_dlq
        self.flush_producer = flush_producer
        self.partitions = partitions
        self.flush_interval_s = flush_interval_s
        self.flush_max_events = flush_max_events
        self.on_transition = on_transition
        self.on_late = on_late
        self.advance_idle_s = advance_idle_s
        self.cache_max_accounts = cache_max_accounts
        self.grace_ms = grace_ms
        self._events = 0  # events applied since the last flush
        self._commit: asyncio.Future[None] | None = None  # the flush being delivered
        self._since = 0.0  # monotonic time of the oldest unflushed record
        # Wall time each account last received a record: stream time only advances accounts that
        # have been idle this long. Marks cannot overtake the events that went straight to the
        # account, but an event routed through the user stage takes another hop.
        self.last_seen: dict[str, float] = {}
        self._assigned_at = time.monotonic()
        self.cache: dict[str, AccountState] = {}
        self.work: dict[int, PartitionWork] = {}
        self._timers_loaded = False
        self._generation = 0  # bumped by every revocation
        # Encoded state size per account of the assigned partitions (the state gauges).
        self.state_sizes: dict[str, int] = {}
        self.state_bytes = 0
        # The PQL accounts and segment counts (the gauges, the lookup API).
        self.members = Membership()
        self._record_ts = 0.0  # broker timestamp (s) of the record being processed
        self.events_applied = 0

    # -- records ---------------------------------------------------------------------------
    async def on_record(self, record: Any) -> None:
        """One by-account record (events, then stream time: `streams.app.wire`), inside its
        stream iteration."""
        msg = record.message
        part = msg.partition
        self._record_ts = msg.timestamp or 0.0
        work = self._work(part)
        if not self._timers_loaded:
            await self._load_timers()
        entry = work.align.entry(record)
        rejected: list[tuple[Event, Reject]] = []
        frame = decode(record.value)
        if frame is not None:
            items, times = frame
            if items:
                self._take_batch(work, items, entry, rejected)
                self._events += len(items)
            if times:  # stream time after the frame's events
                clock = work.clock
                for path, progress in times.items():
                    clock.merge(progress, path)
                await self._on_time(work, clock.value, rejected)
        for ev, reject in rejected:
            await self.send_dlq(event_json(ev), reject, ev)
        if not self._since:
            self._since = time.monotonic()
        # A mark flushes only when the interval is up, like any record: marks give a quiet
        # partition a record to check the interval on, not a flush of their own (the marks of
        # every partition would otherwise flush several times per mark interval).
        if (
            self._events >= self.flush_max_events
            or time.monotonic() - self._since >= self.flush_interval_s
        ):
            await self.flush(wait=False)

    def _take_batch(
        self,
        work: PartitionWork,
        items: list[tuple[str, int, int, int, bytes]],
        entry: Entry,
        rejected: list[tuple[Event, Reject]],
    ) -> None:
        """Hold a batch's events until stream time passes them; apply at once those it already
        has (late for the stream). Synchronous: this loop runs once per event."""
        part = work.part
        cache = self.cache
        align = work.align
        until = work.clock.releasable()
        if until is not None:
            until = min(until, self.versions.limit(work))
        for account, q, pos, path, data in items:
            state = cache.get(account) or self._state(part, account)
            source = f"{q}:{path}"
            if state is not None and state.seen.get(source, -1) >= pos:
                continue  # re-sent or re-read after a crash: this state already holds it
            ev = decode_event(data)
            if until is not None and ev.ts < until:
                self._apply(work, account, source, pos, ev, rejected)
            else:
                align.hold(order_key(ev), (account, source, pos, ev), entry)

    def _apply(
        self,
        work: PartitionWork,
        account: str,
        source: str,
        pos: int,
        ev: Event,
        rejected: list[tuple[Event, Reject]],
    ) -> None:
        """Apply one event; a too-late one goes to `rejected` (the caller dead-letters it)."""
        cache = self.cache
        state = cache.get(account) or self._state(work.part, account)
        if state is not None and state.version != work.version:
            state = self._catch_up(work, account, state)
        scorer = self.versions.scorer(work.version)
        new = state is None
        outcome = scorer.apply(account, state, ev, work.shadows)
        if outcome.duplicate:
            if self.on_duplicate is not None:
                self.on_duplicate()
        elif outcome.reject is not None:  # too late: only possible for an existing account
            rejected.append((ev, outcome.reject))
            if self.on_late is not None:
                self.on_late(False)
        elif outcome.late and self.on_late is not None:
            self.on_late(True)
        state = outcome.state
        if state.seen.get(source, -1) < pos:
            state.seen[source] = pos
        self.last_seen[account] = time.monotonic()
        cache[account] = state
        work.dirty.add(account)
        work.timers.schedule(account, state.next_expiry)
        if outcome.transitions:
            self._emit(outcome.transitions)
        if scorer.shadow_out:
            self._emit_shadow(scorer.take_shadow())
        if not outcome.duplicate and outcome.reject is None:
            self.events_applied += 1
            if self.funnel is not None:
                self.funnel.on_event(ev, state, new)

    async def _on_time(
        self, work: PartitionWork, watermark: int | None, rejected: list[tuple[Event, Reject]]
    ) -> None:
        """Stream time moved: apply the held events it passed, in canonical order, then
        advance the quiet accounts — only as far as the model versions allow: a switch whose
        time stream time reached is made first (`streams.app.lifecycle.versions`)."""
        versions = self.versions
        while (change := versions.due(work)) is not None:
            if not versions.can_switch(work, change.at_ms) or versions.awaits_backfill(change):
                break
            self._release(work, change.at_ms, rejected)
            self._advance(work, change.at_ms, force=True)
            if isinstance(change, ShadowStart):
                await self._start_shadow(work, change)
            else:
                await self._switch(work, change)
        limit = versions.limit(work)
        self._release(work, limit, rejected)
        if watermark is not None:
            self._advance(work, min(watermark, limit))

    def _release(
        self, work: PartitionWork, limit: int, rejected: list[tuple[Event, Reject]]
    ) -> None:
        align = work.align
        for (account, source, pos, ev), entry in align.release(limit):
            self._apply(work, account, source, pos, ev, rejected)
            align.done(entry)

    def held_events(self) -> int:
        return sum(len(w.align) for w in self.work.values())

    def _advance(self, work: PartitionWork, watermark: int, force: bool = False) -> None:
        """Advance the accounts with an expiry due by `watermark` (`force`: busy ones too)."""
        due = work.timers.pop_due(watermark)
        now = time.monotonic()
        scorer = self.versions.scorer(work.version)
        for account in due:
            state = self._state(work.part, account)
            if state is None:
                continue
            # An account restored or taken over counts as seen at assignment: its own records
            # may still be in flight.
            if (
                not force
                and now - self.last_seen.get(account, self._assigned_at) < self.advance_idle_s
            ):
                work.timers.schedule(account, state.next_expiry)  # busy: retry on a later mark
                continue
            if state.version != work.version:
                state = self._catch_up(work, account, state)
            transitions = scorer.advance(account, state, watermark)
            work.dirty.add(account)
            work.timers.schedule(account, state.next_expiry)
            self._emit(transitions)
            if scorer.shadow_out:
                self._emit_shadow(scorer.take_shadow())

    def _emit(self, transitions: list[dict[str, Any]]) -> None:
        for t in transitions:
            self.send_transition(t["account_id"], orjson.dumps(t))
            self.members.on_transition(t)
            if self.funnel is not None and t["kind"] == "qualified":
                state = self.cache.get(t["account_id"])
                if state is not None:
                    self.funnel.on_qualified(state, t["occurred_at"])
            if self.on_transition is not None:
                self.on_transition(t, self._record_ts)

    def _emit_shadow(self, transitions: list[dict[str, Any]]) -> None:
        if self.send_shadow is None:
            return
        for t in transitions:
            self.send_shadow(t["account_id"], orjson.dumps(t))
            if self.on_shadow_transition is not None:
                self.on_shadow_transition(t)

    def stream_time(self) -> int | None:
        """The least stream time over this stage's partitions (the watermark gauge)."""
        values = [w.clock.value for w in self.work.values() if w.clock.value is not None]
        return min(values) if values else None

    # -- state -----------------------------------------------------------------------------
    def _work(self, part: int) -> PartitionWork:
        work = self.work.get(part)
        if work is None:
            clock = StreamClock(self.grace_ms, self.mark_paths, self.idle_hold_s)
            work = self.work[part] = PartitionWork(part, clock)
            stored = self.table.get(part, MODEL_KEY)
            work.version = (
                decode_version(stored) if stored is not None else self.versions.first_version
            )
            work.shadows = self.versions.restored_shadows(
                self.table.get(part, SHADOWS_KEY), work.version
            )
        return work

    def _state(self, part: int, account: str) -> AccountState | None:
        state = self.cache.get(account)
        if state is None:
            state = self.codec.decode(self.table.get(part, account))
            if state is not None:
                if not state.version:  # written before versions were kept
                    state.version = self.versions.first_version
                self.cache[account] = state
        return state

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: drop their cache and unacked work (it will be re-read by the new
        owner from the last commit)."""
        for part in partitions:
            self.work.pop(part, None)
        self.table.forget(partitions)
        self._generation += 1  # a load of the timers under way is now stale
        if partitions:
            n = self.partitions
            gone = {
                a
                for a in self.cache.keys() | self.last_seen.keys() | self.state_sizes.keys()
                if partition_of(a, n) in partitions
            }
            for table in (self.cache, self.last_seen, self.state_sizes):
                for account in gone & table.keys():
                    del table[account]
            self.members.forget([a for a in self.members.pqls if partition_of(a, n) in partitions])
            self.state_bytes = sum(self.state_sizes.values())
        self._timers_loaded = False

    async def _load_timers(self) -> None:
        """After an assignment: index every restored account's next expiry by partition.
        Yields to the event loop between partitions (a million accounts take seconds: the web
        server and the timers keep answering); a revocation meanwhile (`forget`) ends this
        load, and the next record starts a fresh one."""
        generation = self._generation
        self._timers_loaded = True
        self._assigned_at = time.monotonic()
        n = 0
        self.members.reset()
        self.state_sizes = {}
        decode = self.codec.summary  # the signals stay undecoded
        for part in self.table.active_partitions():
            await asyncio.sleep(0)
            if self._generation != generation:
                return
            work = self._work(part)
            schedule = work.timers.schedule
            for account, data in self.table.partition_items(part):
                if is_control_key(account):
                    continue
                state = decode(data)
                if state is None:
                    continue
                if work.max_clock is None or state.clock > work.max_clock:
                    work.max_clock = state.clock
                self.state_sizes[account] = len(data)
                self.members.restored(account, state)
                schedule(account, state.next_expiry)
                n += 1
        self.state_bytes = sum(self.state_sizes.values())
        log.info("indexed window expiries of %d restored accounts", n)
