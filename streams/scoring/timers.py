"""An index of "next window expiry -> accounts", so advancing a watermark touches only the
accounts that have something due, never a scan of every account."""

from __future__ import annotations

import heapq

from streams.state.account import NEVER


class ExpiryIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due_at: dict[str, int] = {}

    def schedule(self, account_id: str, expiry: int | None) -> None:
        """Record an account's next expiry (None or NEVER: nothing pending)."""
        if expiry is None or expiry >= NEVER:
            self._due_at.pop(account_id, None)
            return
        if self._due_at.get(account_id) == expiry:
            return
        self._due_at[account_id] = expiry
        heapq.heappush(self._heap, (expiry, account_id))
        # Stale entries are skipped on pop; compact when they dominate, so memory stays bounded.
        if len(self._heap) > 4 * len(self._due_at) + 1024:
            self._heap = [(e, a) for a, e in self._due_at.items()]
            heapq.heapify(self._heap)

    def discard(self, account_id: str) -> None:
        self._due_at.pop(account_id, None)

    def has_due(self, until: int) -> bool:
        """Whether `pop_due(until)` may return anything (cheap: one look at the heap's top)."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= until

    def pop_due(self, until: int) -> list[str]:
        """Accounts whose next expiry is at or before `until`, earliest first; they are removed
        (re-`schedule` them after advancing)."""
        return [account for _, account in self.pop_due_items(until)]

    def pop_due_items(self, until: int) -> list[tuple[int, str]]:
        """`pop_due` with each account's expiry: (expiry, account), in that order."""
        out: list[tuple[int, str]] = []
        heap = self._heap
        while heap and heap[0][0] <= until:
            item = heapq.heappop(heap)
            expiry, account = item
            if self._due_at.get(account) == expiry:
                del self._due_at[account]
                out.append(item)
        return out

    def __len__(self) -> int:
        return len(self._due_at)
