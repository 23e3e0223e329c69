"""Writes a Faust table's changelog and local RocksDB store, but the changelog records go through
the librdkafka `Sink` in batches instead of Faust's per-record producer path, and the store is
written in one RocksDB write batch per partition once the changelog has the records (reads see
uncommitted writes: `get` looks at them first). Faust still owns the table: it creates the store
and the changelog topic, and restores the store from the changelog on assignment and after a
wiped data dir; the records written here are byte-for-byte what `table[key] = value` would have
sent (same key serializer, same partition, raw value), so that recovery reads them unchanged
(tested against a real broker in `tests/integration/test_worker_wiped_state.py`).

`commit(partitions)` waits for delivery, writes the store and records each partition's last
changelog offset as the store's persisted offset, as Faust's own send callback does: a worker
that keeps its data dir then only reads the changelog written after it.

On the embedded broker (Tansu bug 2 in the shared notes) its "latest offset" is the last batch's
base offset + 1, which is wrong when that batch holds several records, and Faust's changelog
recovery would stop short and restore wrong state. Instead of one record per batch everywhere,
`commit` ends with one single-record "seal" batch per changelog partition it wrote, delivered
before anything is acked: whenever an offset can be committed, "latest" is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cached_property, partial
from typing import Any, Protocol

import orjson
import rocksdict
from faust.types import TP

from streams.app.sink import Sink

# A key no account or user id can take (table keys are serialised strings); its empty value
# decodes to "no state".
SEAL_KEY = "\x00pql-seal"


def faust_key_bytes(table: Any, key: str) -> bytes:
    """The key as Faust serialises it for `table` (its store and its changelog)."""
    out: bytes = table.app.serializers.dumps_key(
        table.key_type, key, serializer=table.key_serializer
    )
    return out


class StateTable(Protocol):
    """The slice of `TableWriter` the account stage uses (the unit tests' in-memory table
    stands in for it)."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...

    def take(self, partitions: Iterable[int]) -> dict[int, dict[bytes, bytes]]: ...

    async def commit(self, *, taken: dict[int, dict[bytes, bytes]]) -> None: ...

    def forget(self, partitions: Iterable[int]) -> None: ...

    def active_partitions(self) -> list[int]: ...

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]: ...


class TableWriter:
    def __init__(self, table: Any, sink: Sink, *, seal: bool) -> None:
        self.table = table  # a faust Table of str -> bytes
        self.sink = sink
        self.seal = seal
        # Written by `put`, not yet in the local store: partition -> key bytes -> value.
        self._pending: dict[int, dict[bytes, bytes]] = {}
        # Taken by a commit, awaiting delivery: not yet in the local store either.
        self._committing: dict[int, dict[bytes, bytes]] = {}
        self._revoked: set[int] = set()  # since their last put: never touch their stores
        self.key_bytes = self._key_encoder()

    @cached_property
    def topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def _key_encoder(self) -> Callable[[str], bytes]:
        """orjson.dumps when it gives Faust's bytes (Faust's json codec is orjson when
        installed: 20x cheaper than going through its serializer registry), else Faust's."""
        probe = 'acct-\u00e9\x00\u2028"/'
        faust = partial(faust_key_bytes, self.table)
        if self.table.key_serializer == "json" and orjson.dumps(probe) == faust(probe):
            return orjson.dumps
        return faust

    def get(self, partition: int, key: str) -> bytes | None:
        """The value of `key` in `partition`: what `put` wrote, committed or not (no current
        event needed)."""
        raw = self.key_bytes(key)
        for layer in (self._pending, self._committing):
            written = layer.get(partition)
            if written is not None and raw in written:
                return written[raw]
        value: bytes | None = self._db(partition).get(raw)
        return value

    def _db(self, partition: int) -> Any:
        # Faust's RocksDB store keeps one database per partition; `table[key]` picks it from
        # the current event's partition, here the caller names it.
        return self.table.data._db_for_partition(partition)

    def active_partitions(self) -> list[int]:
        """The partitions this worker owns (active, not standby) with a local database."""
        store = self.table.data
        actives = self.table.app.assignor.assigned_actives()
        return sorted(part for part in store._dbs if TP(self.topic, part) in actives)

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """(key, value) of every entry stored in one partition's database, read straight from
        it: keys decode with orjson when that is how they were encoded (Faust's `items()`
        goes through its serializer registry per key, and iterates every partition)."""
        store = self.table.data
        db = store._dbs.get(partition)
        if db is None:  # revoked (its database closed) since the caller looked
            return
        decode = orjson.loads if self.key_bytes is orjson.dumps else store._decode_key
        offset_key = store.offset_key
        for raw, value in db.items():
            if raw != offset_key:
                yield str(decode(raw)), value

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Stage a write: `commit` sends it to the changelog (to the same partition, where
        Faust's recovery looks for it) and only then to the local store. Reads see it at once;
        the last write of a key before a commit is the only one sent."""
        raw = self.key_bytes(key)
        self._pending.setdefault(partition, {})[raw] = value
        self._revoked.discard(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: drop their uncommitted writes (their records are re-read by the
        new owner; their stores are no longer ours to write)."""
        for part in partitions:
            self._pending.pop(part, None)
            self._committing.pop(part, None)
            self._revoked.add(part)

    def take(self, partitions: Iterable[int] | None = None) -> dict[int, dict[bytes, bytes]]:
        """What `put` staged so far (for `partitions`, default all), for a `commit`: writes
        staged after this call wait for the next one. Still visible to `get` meanwhile."""
        staged = set(self._pending)
        parts = staged if partitions is None else set(partitions) & staged
        taking = {part: self._pending.pop(part) for part in parts}
        self._committing.update(taking)
        return taking

    async def commit(
        self,
        partitions: Iterable[int] | None = None,
        taken: dict[int, dict[bytes, bytes]] | None = None,
    ) -> None:
        """Send staged writes (`taken` earlier with `take`, else those of `partitions`, default
        all) to the changelog, wait for delivery, write the local store in one batch per
        partition, seal on the embedded broker, and record the persisted offsets. Changelog
        records are produced here, not in `put`: take, flush what the state depends on
        (transitions, forwarded events), then commit — the state is never delivered before
        what it depends on."""
        taking = self.take(partitions) if taken is None else taken
        if not taking:
            return
        parts = set(taking)
        topic = self.topic
        produce = self.sink.produce
        for part, writes in taking.items():
            for raw, value in writes.items():
                produce(topic, value, raw, partition=part)
        try:
            await self.sink.flush()
            # A rebalance during the flush may have revoked some (`forget`): not ours to write.
            parts = {part for part in parts if part in self._committing}
            for part in parts:
                batch = rocksdict.WriteBatch(raw_mode=True)
                for raw, value in self._committing[part].items():
                    batch.put(raw, value)
                self._db(part).write(batch)
        finally:
            for part in taking:
                self._committing.pop(part, None)
        if self.seal:
            seal = self.key_bytes(SEAL_KEY)
            for part in parts:
                self.sink.produce(topic, b"", seal, partition=part)
            await self.sink.flush()
        store = self.table.data
        for part in parts - self._revoked:
            offset = self.sink.delivered.get((topic, part))
            if offset is not None:
                store.set_persisted_offset(TP(topic, part), offset)
