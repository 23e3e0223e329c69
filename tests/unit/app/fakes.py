"""Test doubles shared by the stage tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class FakeTable:
    """The slice of `TableWriter` the stage uses, over a dict."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, str], bytes] = {}

    def get(self, partition: int, key: str) -> bytes | None:
        return self.data.get((partition, key))

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[(partition, key)] = value

    def take(self, partitions: Iterable[int]) -> dict[int, dict[bytes, bytes]]:
        return {}

    async def commit(self, taken: dict[int, dict[bytes, bytes]]) -> None:
        return None

    def forget(self, partitions: Iterable[int]) -> None:
        return None

    def active_partitions(self) -> list[int]:
        return sorted({p for p, _ in self.data})

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        return ((k, v) for (p, k), v in self.data.items() if p == partition)
