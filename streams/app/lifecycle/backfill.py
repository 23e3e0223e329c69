"""The worker's backfill: a model with other signals built from the input topic's retained
records while the live model keeps serving (`streams.scoring.backfill` for what a switch over it
does to an account; README "Changing your model").

A thread reads every partition of the input topic from its first retained record, parses each
record as the ingest does, merges the partitions in event-time order (a partition whose reading
runs ahead of the slowest one by more than `ahead_ms` is paused), routes the events with a router
of its own and builds the new model's signals (`Scorer.absorb`, nothing is decided) for the
accounts of the by-account partitions this worker owns. Events are absorbed only below a bound:
first the *floor* (the stream time the owned partitions have applied: the switch cannot happen
before it), then the agreed switch time T. Events at or after the bound wait (`parked`) until T
is known; those before T are absorbed then, the rest dropped (the live path applies them under
the new model after the switch).

- `caught_up`: the first pass reached the end of every partition. Only then do the partitions
  report for the switch (`streams.app.lifecycle.versions`), so stream time is frozen for a
  round trip, not for the backfill.
- `handover(part, T)`: once a partition's stream time reached T, the reader reads every
  partition to its current end (so it has read whatever the live path applied), absorbs what it
  holds before T and hands over the partition's states. An event it read that the live path
  applies later (before T, so late there) is skipped by message id; one it read at or after T is
  the live path's.
- `history_from`: None when every input partition still holds its first record (the history is
  whole); otherwise R, the latest first-retained event time over the partitions: only events at
  or after R are read from the topic (before it, some partition lost its records), and the
  backfilled signals are partial until R plus their window. With a *seed* (`pql worker
  --backfill-seed FILE`, an export of the older history) the events before R come from the
  file instead, and the history is whole again.
- A partition gained while the backfill runs (a rebalance) restarts it: its accounts' history was
  not kept. A worker restarted before its partitions switched starts the backfill again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.app.ingest.config import partition_of
from streams.backtest.replay import history_lines
from streams.events.order import HoldBuffer, order_key
from streams.events.parse import parse_event
from streams.events.resolver import user_trait_keys
from streams.events.routing import Router
from streams.events.types import Event, Reject
from streams.io.kafka_config import consumer_config
from streams.model.spec import Model
from streams.scoring.engine import Scorer
from streams.state.account import AccountState

log = logging.getLogger(__name__)

_NONE = -(2**62)
_BATCH = 2000
# consume(n, timeout) waits out its timeout unless n records come: short, so a handover (the
# partition waits at the switch time for it) is not held up by polls.
_POLL_S = 0.05


@dataclass(frozen=True)
class BackfillSource:
    """Where a backfill reads: the input topic, and optionally a seed file of older history."""

    bootstrap: str
    topic: str
    security: Mapping[str, Any] | None = None
    seed: Path | None = None


class Backfill:
    """One model's backfill (see module). The event loop calls `set_owned`, `set_floor`,
    `handover` and reads `caught_up`, `history_from`; the thread does the rest."""

    def __init__(
        self,
        model: Model,
        source: BackfillSource,
        partitions: int,
        owned: set[int],
        ahead_ms: int = 3_600_000,
        on_records: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.version = model.version
        self.scorer = Scorer(model)
        self.source = source
        self.topic = source.topic
        self.partitions = partitions
        self.ahead_ms = ahead_ms
        self.on_records = on_records
        self.caught_up = threading.Event()
        self.history_from: int | None = None
        self.records = 0  # input records read (this pass)
        self._lock = threading.Lock()
        self._owned = set(owned)  # by-account partitions whose accounts are kept
        self._handed: set[int] = set()
        self._floor = _NONE
        self._at: int | None = None  # the agreed switch time, once known
        self._cut = _NONE  # topic events before this are not read (R, see module)
        self._restart = False
        self._requests: list[tuple[int, concurrent.futures.Future[dict[str, AccountState]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"backfill-v{model.version}", daemon=True
        )
        self._reset()

    # -- the event loop's side -------------------------------------------------------------
    def start(self) -> None:
        log.info(
            "backfill of %s v%d: reading %s from its first retained record",
            self.model.name,
            self.version,
            self.topic,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(3)  # a daemon: it ends at its next poll
        with self._lock:
            for _, fut in self._requests:
                fut.cancel()
            self._requests.clear()

    def set_owned(self, parts: set[int]) -> None:
        """The by-account partitions this worker owns now. One gained that has not been
        handed over needs its history: the backfill starts again."""
        with self._lock:
            self._handed &= parts  # one lost may come back unswitched: its history again
            gained = parts - self._owned - self._handed
            lost = self._owned - parts
            self._owned = set(parts) - self._handed
            for p in lost:
                self._states.pop(p, None)
            if gained:
                self._restart = True
                self.caught_up.clear()
                log.info(
                    "backfill of v%d: partitions %s gained, reading the input again",
                    self.version,
                    sorted(gained),
                )

    def set_floor(self, floor: int) -> None:
        """A stream time the switch cannot come before (what an owned partition applied)."""
        if floor > self._floor:
            self._floor = floor

    def agree(self, at: int) -> None:
        """The switch time T, once agreed: from then on the bound is T, whatever the floor (a
        worker restarted after some of its partitions switched knows T before any handover,
        and those partitions' stream time runs past it)."""
        with self._lock:
            if self._at is None:
                self._at = at

    async def handover(self, part: int, at: int) -> dict[str, AccountState]:
        """The states of partition `part`'s accounts as of switch time `at` (see module)."""
        fut: concurrent.futures.Future[dict[str, AccountState]] = concurrent.futures.Future()
        self.agree(at)
        with self._lock:
            self._requests.append((part, fut))
        return await asyncio.wrap_future(fut)

    def ready(self) -> bool:
        return self.caught_up.is_set()

    # -- the thread ---------------------------------------------------------------------------
    def _reset(self) -> None:
        self._states: dict[int, dict[str, AccountState]] = {}
        self._router = Router(user_trait_keys(self.model))
        self._hold: HoldBuffer[Event] = HoldBuffer()
        # Released events at or after the floor, in order, until the floor or T passes them.
        self._parked: deque[Event] = deque()
        self._latest: dict[int, int] = {}
        self._at_end: set[int] = set()
        self._paused: set[int] = set()
        self._next: dict[int, int] = {}  # per input partition, the next offset to read
        self.records = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._pass()
            except Exception:
                log.exception(
                    "backfill of v%d failed; reading the input again in 5 s (the switch waits "
                    "for it)",
                    self.version,
                )
                self.caught_up.clear()
                self._stop.wait(5)

    def _pass(self) -> None:
        """Read from the first retained records until stopped or restarted."""
        conf = consumer_config(self.source.bootstrap, None, self.source.security)
        conf |= {"enable.partition.eof": True, "fetch.max.bytes": 16 * 1024 * 1024}
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(self.topic, timeout=30)
            parts = sorted(meta.topics[self.topic].partitions)
            lows: dict[int, int] = {}
            for q in parts:
                lows[q], _ = consumer.get_watermark_offsets(TopicPartition(self.topic, q), 30)
            with self._lock:
                self._restart = False
                self._reset()
            self._next = dict(lows)
            cut = self._first_retained(consumer, {q: low for q, low in lows.items() if low > 0})
            self._cut = _NONE if cut is None else cut
            seed = self.source.seed
            self.history_from = cut if seed is None else None
            if cut is not None and seed is not None:
                self._read_seed(seed, cut)
            consumer.assign([TopicPartition(self.topic, q, lows[q]) for q in parts])
            started = time.monotonic()
            while not self._stop.is_set() and not self._restart:
                msgs = consumer.consume(_BATCH, _POLL_S)
                self._take(msgs)
                self._release(consumer, parts)
                if not self.caught_up.is_set() and len(self._at_end) == len(parts):
                    self.caught_up.set()
                    log.info(
                        "backfill of v%d caught up: %d records in %.1f s (history %s)",
                        self.version,
                        self.records,
                        time.monotonic() - started,
                        "whole" if self.history_from is None else f"from {self.history_from}",
                    )
                if self._requests and self.caught_up.is_set():
                    self._serve(consumer, parts)
        finally:
            consumer.close()

    def _first_retained(self, consumer: Consumer, truncated: dict[int, int]) -> int | None:
        """R: the latest event time of the first retained event over the partitions that
        lost records (`truncated`: partition -> its first retained offset); None if none did."""
        if not truncated:
            return None
        consumer.assign([TopicPartition(self.topic, q, low) for q, low in truncated.items()])
        first: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(first) < len(truncated) and time.monotonic() < deadline:
            if self._stop.is_set():
                break
            for m in consumer.consume(_BATCH, _POLL_S):
                q = m.partition()
                if m.error() is not None or q is None or q in first:
                    continue
                ev = parse_event(m.value() or b"", time.time() * 1000)
                if not isinstance(ev, Reject):
                    first[q] = ev.ts
        consumer.unassign()
        return max(first.values()) if first else None

    def _read_seed(self, path: Path, cut: int) -> None:
        """The seed file's events before `cut` (the topic has the rest), in event-time order."""
        now = time.time() * 1000
        hold: HoldBuffer[Event] = HoldBuffer()
        latest = _NONE
        n = 0
        for _, line in history_lines([path]):
            ev = parse_event(line, now)
            if isinstance(ev, Reject) or ev.ts >= cut:
                continue
            n += 1
            hold.push(order_key(ev), ev)
            if ev.ts > latest:
                latest = ev.ts
                with self._lock:
                    for held in hold.release(latest - self.ahead_ms):
                        self._deliver(held)
            if self._stop.is_set() or self._restart:
                return
        with self._lock:
            for held in hold.release_all():
                self._deliver(held)
        log.info(
            "backfill of v%d: %d events before %d from the seed %s", self.version, n, cut, path
        )

    def _take(self, msgs: list[Message]) -> None:
        read = 0
        for m in msgs:
            q = m.partition()
            assert q is not None
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(q)
                else:
                    log.warning("backfill read error: %s", err)
                continue
            self._at_end.discard(q)
            self._next[q] = (m.offset() or 0) + 1
            read += 1
            _, broker_ms = m.timestamp()
            ev = parse_event(m.value() or b"", broker_ms if broker_ms > 0 else time.time() * 1000)
            if isinstance(ev, Reject):
                continue  # dead-lettered by the live path already
            if ev.ts > self._latest.get(q, _NONE):
                self._latest[q] = ev.ts
            self._hold.push(order_key(ev), ev)
        if read:
            self.records += read
            if self.on_records is not None:
                self.on_records(read)

    def _watermark(self, parts: list[int]) -> int | None:
        """Every event older than this has been read (None: every partition is at its end)."""
        reading = [self._latest.get(q, _NONE) for q in parts if q not in self._at_end]
        return min(reading) if reading else None

    def _release(self, consumer: Consumer, parts: list[int]) -> None:
        wm = self._watermark(parts)
        events = self._hold.release_all() if wm is None else self._hold.release(wm)
        with self._lock:
            self._unpark()
            for ev in events:
                self._absorb(ev)
        # Pause what runs too far ahead of the slowest partition (its events are held).
        if wm is None:
            ahead: set[int] = set()
        else:
            ahead = {q for q in parts if self._latest.get(q, _NONE) > wm + self.ahead_ms}
        if ahead - self._paused:
            consumer.pause([TopicPartition(self.topic, q) for q in ahead - self._paused])
        if self._paused - ahead:
            consumer.resume([TopicPartition(self.topic, q) for q in self._paused - ahead])
        self._paused = ahead

    def _absorb(self, ev: Event) -> None:
        """Route and absorb one event, below the bound (under the lock). Before T is known,
        an event at or after the floor waits, and so does every event after it (routing must
        see them in order: a group call before the tracks it resolves)."""
        if self._at is None:
            if self._parked or ev.ts >= self._floor:
                self._parked.append(ev)
                return
        elif ev.ts >= self._at:
            return  # at or after the switch: the live path's
        if ev.ts >= self._cut:
            self._deliver(ev)

    def _unpark(self) -> None:
        """Absorb the waiting events the bound now passes, in order (under the lock)."""
        parked = self._parked
        bound = self._at if self._at is not None else self._floor
        while parked and parked[0].ts < bound:
            ev = parked.popleft()
            if ev.ts >= self._cut:
                self._deliver(ev)
        if self._at is not None:
            parked.clear()  # at or after the switch: the live path's

    def _deliver(self, ev: Event) -> None:
        """Route one event and absorb it into the owned accounts' states (under the lock)."""
        deliveries, _ = self._router.route(ev)
        n = self.partitions
        for account, delivered in deliveries:
            p = partition_of(account, n)
            if p not in self._owned:
                continue
            states = self._states.setdefault(p, {})
            states[account] = self.scorer.absorb(states.get(account), delivered)

    def _serve(self, consumer: Consumer, parts: list[int]) -> None:
        """Hand over the partitions asked for: read everything to the current end first."""
        tps = [TopicPartition(self.topic, q) for q in parts]
        highs = {
            q: consumer.get_watermark_offsets(tp, 30)[1] for q, tp in zip(parts, tps, strict=True)
        }
        consumer.resume(tps)
        self._paused = set()
        deadline = time.monotonic() + 60
        while not self._stop.is_set():
            # The position also passes what is never delivered (a transaction's markers).
            at = {tp.partition: tp.offset for tp in consumer.position(tps)}
            if all(max(self._next.get(q, 0), at.get(q, -1)) >= highs[q] for q in parts):
                break
            if time.monotonic() > deadline:
                log.warning("backfill of v%d: the input's end not reached in 60 s", self.version)
                break
            self._take(consumer.consume(_BATCH, _POLL_S))
        with self._lock:
            self._unpark()  # T is known: what waited is absorbed or dropped
            for ev in self._hold.release_all():
                self._absorb(ev)
            requests, self._requests = self._requests, []
            for part, fut in requests:
                self._handed.add(part)
                self._owned.discard(part)
                fut.set_result(self._states.pop(part, {}))
        self._latest = {}
        self._at_end = set(parts)  # read to the end; what comes next is read as it comes
