"""Who is in what, over the partitions a worker owns: the PQL accounts and the members of each
segment. Rebuilt from the table after an assignment (`restored`), then kept current from the
transitions (`on_transition`). The gauges read the counts, the lookup API the PQL accounts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from streams.state.account import StateSummary


class Membership:
    def __init__(self) -> None:
        self.pqls: set[str] = set()
        self.segment_accounts: Counter[str] = Counter()

    @property
    def pql_accounts(self) -> int:
        return len(self.pqls)

    def reset(self) -> None:
        self.pqls = set()
        self.segment_accounts = Counter()

    def restored(self, account: str, state: StateSummary) -> None:
        if state.pql:
            self.pqls.add(account)
        if state.segments:
            self.segment_accounts.update(state.segments)

    def on_transition(self, t: dict[str, Any]) -> None:
        kind = t["kind"]
        if kind == "qualified":
            self.pqls.add(t["account_id"])
        elif kind == "disqualified":
            self.pqls.discard(t["account_id"])
        elif kind == "segment_entered":
            self.segment_accounts[t["segment"]] += 1
        else:
            self.segment_accounts[t["segment"]] -= 1

    def forget(self, accounts: Iterable[str]) -> None:
        """Accounts of revoked partitions (their counts are rebuilt at the next assignment)."""
        self.pqls.difference_update(accounts)
