"""The user stage: routes the events that need their user's calls (identify, group, tracks that
name no account), keyed by user across all input partitions, with membership and the user
traits the model reads in the Faust table `users`.

Like the account stage it holds events until stream time (the ingest's marks read in its
partition) passes them and routes them in canonical event-time order (`streams.app.align`), so
a user's group call is seen before the tracks that came after it, whatever input partition each
sat in. After the stream time in each record it relays how far it has released
(`released_progress`: not the progress it read, since what it still holds is older) into every
by-account partition, after the forwards that time released, so the account stage never
overtakes an event still here. Relays are coalesced: one frame per by-account partition carries
those of every by-user partition that reported, sent once all the stage's partitions have (they
get the ingest's time at once) or `RELAY_DELAY_S` after the first — four partitions would
otherwise write sixteen records per ingest poll, and each record costs the account stage's
event loop about half a millisecond in Faust. The deliveries routed meanwhile ride in the same
frames, ahead of the progress.

At-least-once: a record is acked (by the worker, once its forwards and the user writes are
delivered) when none of its events is held. Each user record remembers, per input partition,
the offset of the last of the user's events routed (`UserRecord.seen`), so an event re-read
after a crash or rebalance is not routed again against the newer record.

Framework-light, like `AccountStage`: the worker's agent hands it records; it talks to the table
and the by-account topic through what it is given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from streams.app.align import Aligned, Entry
from streams.app.ingest import partition_of
from streams.app.watermark import StreamClock, released_progress
from streams.app.wire import (
    SYNTHETIC_DELIVERED,
    UNDELIVERED,
    Item,
    Times,
    decode,
    frames,
    position,
)
from streams.events.codec import encode_event
from streams.events.order import order_key
from streams.events.parse import parse_event
from streams.events.resolver import UserRecord
from streams.events.routing import route_user, user_stage
from streams.events.types import Event, Reject

RELAY_DELAY_S = 0.01  # longest a relay waits for the stage's other partitions to report

# (user id, input partition, input offset, what the ingest delivered of it, the parsed event,
# its original bytes)
UserItem = tuple[str, int, int, int, Event, bytes]


class UserTable(Protocol):
    """The slice of `TableWriter` the stage uses."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...


class UserStage:
    def __init__(
        self,
        trait_keys: frozenset[str],
        table: UserTable,
        # (by-account partition, record value): queued in order with the earlier ones of that
        # partition; delivered by the worker's flush before anything is acked.
        send: Callable[[int, bytes], None],
        send_dlq: Callable[[bytes, bytes | None, Reject], Awaitable[Any]],
        partitions: int,
        grace_ms: int = 0,
        idle_hold_s: float = 1.0,
    ) -> None:
        self.trait_keys = trait_keys
        self.table = table
        self.send = send
        self.send_dlq = send_dlq
        self.partitions = partitions
        self.grace_ms = grace_ms
        self.idle_hold_s = idle_hold_s
        self.work: dict[int, Aligned[UserItem]] = {}
        self._relays: Times = {}  # by-user partition -> released progress not relayed yet
        self._out: dict[int, list[Item]] = {}  # by-account partition -> deliveries not sent yet

    async def on_record(self, record: Any) -> list[Any]:
        """One by-user record (events, then stream time: `streams.app.wire`); returns the
        records that may now be acked once what they caused is delivered, oldest first."""
        path: int = record.message.partition
        work = self._work(path)
        entry = work.entry(record)
        frame = decode(record.value)
        if frame is None:
            return work.ackable()
        items, times = frame
        routed: list[tuple[UserItem, Entry | None]] = []
        for user_id, q, offset, mark, raw in items:
            ev = parse_event(raw)  # the ingest forwards the original bytes
            if isinstance(ev, Reject):  # cannot happen: ingest parsed it; never drop it
                await self.send_dlq(raw, None, ev)
                continue
            stored = self.table.get(path, user_id)
            if stored and UserRecord.from_bytes(stored).seen.get(q, -1) >= offset:
                continue  # routed before a crash or rebalance: not again
            item = (user_id, q, offset, mark, ev, raw)
            if work.due(ev.ts):
                routed.append((item, None))  # stream time passed it already: late
            else:
                work.hold(order_key(ev), item, entry)
        if times:
            for source, progress in times.items():
                work.clock.merge(progress, source)
            routed.extend(work.release())
        await self._route(path, routed)
        for _, held_in in routed:
            if held_in is not None:
                work.done(held_in)
        if times:
            self._relays[path] = released_progress(work.clock)
            if self._relays.keys() >= self.work.keys():
                self.send_pending()  # every partition of this stage has reported: at once
        return work.ackable()

    @property
    def pending(self) -> bool:
        """Forwards or released progress not sent yet: the worker calls `send_pending`
        within `RELAY_DELAY_S` (and before it acks anything) if the stage's other partitions
        do not report first."""
        return bool(self._out or self._relays)

    def send_pending(self) -> None:
        """The routed deliveries, then how far each partition that reported since the last
        call has released: one frame per by-account partition (more if its deliveries need
        splitting; the released progress rides on the last)."""
        if not (self._out or self._relays):
            return
        out, times = self._out, self._relays
        self._out, self._relays = {}, {}
        for part in range(self.partitions):
            for value in frames(out.get(part), times):
                self.send(part, value)

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their held events, and the deliveries routed from them not sent
        yet, are re-read and routed again by the new owner."""
        for part in partitions:
            self.work.pop(part, None)
            self._relays.pop(part, None)
        for part, items in list(self._out.items()):
            kept = [item for item in items if item[3] not in partitions]
            if kept:
                self._out[part] = kept
            else:
                del self._out[part]

    def held_events(self) -> int:
        return sum(len(w) for w in self.work.values())

    def _work(self, path: int) -> Aligned[UserItem]:
        work = self.work.get(path)
        if work is None:
            work = Aligned(StreamClock(self.grace_ms, idle_hold_s=self.idle_hold_s))
            self.work[path] = work
        return work

    async def _route(self, path: int, items: list[tuple[UserItem, Entry | None]]) -> None:
        """Route `items` in order: their deliveries wait in `_out` for `send_pending`, the
        users' new records are staged in the table (committed by the worker only after
        `send_pending` and a flush: a commit never carries user state whose forwards are not
        delivered)."""
        if not items:
            return
        n = self.partitions
        out: dict[int, list[Item]] = defaultdict(list)
        written: dict[str, bytes] = {}
        for (user_id, q, offset, mark, ev, raw), _ in items:
            stored = written.get(user_id) or self.table.get(path, user_id)
            before = UserRecord.from_bytes(stored) if stored else None
            if mark == UNDELIVERED:
                deliveries, reject, after = route_user(ev, before, self.trait_keys)
            else:
                synthetic = mark != SYNTHETIC_DELIVERED
                deliveries, reject, after = user_stage(ev, before, self.trait_keys, synthetic)
            current = after if after is not None else before
            if current is not None:
                # Remember how far this user's input was routed (re-reads are skipped).
                seen = dict(before.seen) if before is not None else {}
                if seen.get(q, -1) < offset:
                    seen[q] = offset
                written[user_id] = UserRecord(current.account_id, current.traits, seen).to_bytes()
            if reject is not None:
                await self.send_dlq(raw, user_id.encode(), reject)
            for k, (account, delivered) in enumerate(deliveries):
                item = (account, q, position(offset, k), path, encode_event(delivered))
                out[partition_of(account, n)].append(item)
        for part, batch in out.items():
            self._out.setdefault(part, []).extend(batch)
        for user_id, data in written.items():
            self.table.put(path, user_id, data)
