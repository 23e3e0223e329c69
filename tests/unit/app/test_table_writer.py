"""TableWriter's order of effects, with real RocksDB databases and a recording sink: changelog
records first, the local store only once they are delivered (reads see the writes meanwhile),
the persisted offset last; a partition revoked mid-commit is never written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import rocksdict

from streams.app.table_writer import TableWriter

TOPIC = "app-accounts-changelog"


class FakeSink:
    """Records produce calls; `flush` delivers them (offsets per partition) and runs a hook."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.delivered: dict[tuple[str, int], int] = {}
        self.on_flush: Any = None

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, *,
                partition: int | None = None, headers: Any = None) -> None:  # fmt: skip
        self.records.append((topic, value, key, partition))

    async def flush(self) -> None:
        if self.on_flush is not None:
            hook, self.on_flush = self.on_flush, None
            hook()
        for topic, _, _, part in self.records:
            assert part is not None
            self.delivered[(topic, part)] = self.delivered.get((topic, part), -1) + 1
        self.records.clear()


class FakeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}
        self.persisted: dict[int, int] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            path = str(self.root / f"p{partition}")
            self.dbs[partition] = rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))
        return self.dbs[partition]

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


def _writer(tmp_path: Path, seal: bool = False) -> tuple[TableWriter, FakeSink, FakeStore]:
    store = FakeStore(tmp_path)
    table = SimpleNamespace(
        data=store,
        key_type=None,
        key_serializer="json",
        changelog_topic=SimpleNamespace(get_topic_name=lambda: TOPIC),
        app=SimpleNamespace(
            serializers=SimpleNamespace(dumps_key=lambda _t, k, serializer: orjson.dumps(k))
        ),
    )
    sink = FakeSink()
    return TableWriter(table, sink, seal=seal), sink, store  # type: ignore[arg-type]


def test_store_is_written_only_after_delivery(tmp_path: Path) -> None:
    writer, sink, store = _writer(tmp_path)
    writer.put(1, "acct", b"v0")
    writer.put(1, "acct", b"v1")  # the last write of a key before a commit is the one sent
    assert sink.records == []  # nothing goes out before commit
    assert writer.get(1, "acct") == b"v1"  # reads see the uncommitted write
    assert store._db_for_partition(1).get(b'"acct"') is None  # the store does not, yet

    at_flush: list[object] = []

    def during_flush() -> None:
        at_flush.append(list(sink.records))
        at_flush.append(store._db_for_partition(1).get(b'"acct"'))
        at_flush.append(writer.get(1, "acct"))

    sink.on_flush = during_flush
    asyncio.run(writer.commit())
    # produced by commit; not in the store while being delivered, but visible to reads
    assert at_flush == [[(TOPIC, b"v1", b'"acct"', 1)], None, b"v1"]
    assert store._db_for_partition(1).get(b'"acct"') == b"v1"
    assert store.persisted == {1: 0}
    assert writer.get(1, "acct") == b"v1"


def test_seal_comes_after_the_records(tmp_path: Path) -> None:
    writer, sink, store = _writer(tmp_path, seal=True)
    writer.put(0, "a", b"x")
    writer.put(0, "b", b"y")
    produced: list[bytes | None] = []
    original = sink.flush

    async def recording_flush() -> None:
        produced.extend(key for _, _, key, _ in sink.records)
        await original()

    sink.flush = recording_flush  # type: ignore[method-assign]
    asyncio.run(writer.commit())
    assert produced == [b'"a"', b'"b"', b'"\\u0000pql-seal"']
    assert store.persisted == {0: 2}  # the seal's offset


def test_partition_revoked_during_commit_is_not_written(tmp_path: Path) -> None:
    writer, sink, store = _writer(tmp_path)
    writer.put(0, "kept", b"k")
    writer.put(3, "gone", b"g")
    sink.on_flush = lambda: writer.forget({3})
    asyncio.run(writer.commit())
    assert store._db_for_partition(0).get(b'"kept"') == b"k"
    assert 3 not in store.dbs  # its database was never opened, let alone written
    assert store.persisted == {0: 0}
    assert writer.get(0, "kept") == b"k"


def test_take_then_commit_leaves_later_writes_for_the_next_commit(tmp_path: Path) -> None:
    writer, sink, store = _writer(tmp_path)
    writer.put(2, "early", b"e")
    taken = writer.take()
    writer.put(2, "late", b"l")  # staged after the take: not part of this commit
    asyncio.run(writer.commit(taken=taken))
    assert store._db_for_partition(2).get(b'"early"') == b"e"
    assert store._db_for_partition(2).get(b'"late"') is None
    assert writer.get(2, "late") == b"l"
    asyncio.run(writer.commit())
    assert store._db_for_partition(2).get(b'"late"') == b"l"
    assert store.persisted == {2: 1}
