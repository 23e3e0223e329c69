"""The account stage's write-behind (`streams.app.accounts`): dirty states are written once per
account per flush, after the transitions they caused are delivered, and only then are the
records they cover acked."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from streams.app.partition import PartitionWork
from streams.app.table_writer import StateTable
from streams.state.account import AccountState, StateCodec


class WriteBehind:
    """Mixed into `AccountStage`, whose state this writes."""

    work: dict[int, PartitionWork]
    cache: dict[str, AccountState]
    cache_max_accounts: int
    table: StateTable
    codec: StateCodec
    flush_producer: Callable[[], Awaitable[None]]
    state_sizes: dict[str, int]
    state_bytes: int
    _events: int
    _since: float
    _commit: asyncio.Future[None] | None

    async def flush(self, wait: bool = True) -> None:
        """Write the dirty states once per account and ack what they cover — every assigned
        partition at once, so a flush costs the same few round trips however many partitions
        this worker owns. The states are encoded and staged now (a consistent cut: every
        record to ack has all its events in them); then, in order, the transitions sent so far
        are delivered, the states are delivered (`TableWriter.commit`), and the records are
        acked. With `wait=False` (the agent's own flushes) those round trips run in the
        background while the agent goes on; the next flush waits for them first (one commit
        in flight, so changelog versions and acks stay in order), and a failure there is
        raised by it (and stops the worker through the sink's check meanwhile)."""
        await self.settle()
        works = [w for w in self.work.values() if w.align.pending or w.dirty]
        if not works:
            return
        sizes = self.state_sizes
        put = self.table.put
        encode = self.codec.encode
        cache = self.cache
        written = []
        for work in works:
            if not work.dirty:
                continue
            part = work.part
            for account in work.dirty:
                data = encode(cache[account])
                self.state_bytes += len(data) - sizes.get(account, 0)
                sizes[account] = len(data)
                put(part, account, data)
            work.dirty.clear()
            written.append(part)
        taken = self.table.take(written)
        records = [record for work in works for record in work.align.ackable()]
        self._events = 0
        self._since = 0.0
        self._trim_cache()  # the trimmed states are read from the writer until stored
        self._commit = asyncio.ensure_future(self._deliver(taken, records))
        if wait:
            await self.settle()

    async def _deliver(self, taken: dict[int, dict[bytes, bytes]], records: list[Any]) -> None:
        await self.flush_producer()  # the transitions, first: a state never precedes them
        await self.table.commit(taken=taken)  # the changelog records are delivered (and sealed)
        for record in records:
            record.ack()

    async def settle(self) -> None:
        """Wait for the commit in flight, if any; raise what failed in it."""
        commit, self._commit = self._commit, None
        if commit is not None:
            await commit

    def _trim_cache(self) -> None:
        """Keep at most `cache_max_accounts` decoded states: right after a flush every state is
        clean (stored), so the oldest-inserted are dropped and decoded again when next needed."""
        excess = len(self.cache) - self.cache_max_accounts
        if excess > 0:
            for account in list(itertools.islice(self.cache, excess)):
                del self.cache[account]
