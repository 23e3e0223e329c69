"""The `playbook` of every transition, when the model has one (`streams.model.playbook`).

What it says, from the account's values at the transition's instant:

- `play`: what the transition is about: `qualified` for PQL changes, the segment's name for a
  segment the playbook routes (`playbook.segments`), else `qualified` (the account's standing
  route, for information);
- `route` and `urgency_hours`: for a segment play its own, else the deal-size band's route from
  the complexity x deal-size matrix; `deal_size` and `deal_band` say where the account fell;
- `alert`: whether someone should act now: true for `qualified` and for entering a routed
  segment, unless the account was alerted for the same play within the cooldown (then
  `cooldown_until` says when it ends); `respond_by` = occurred_at + the urgency, for alerts;
- `owner` and `owner_from`: the owner trait's value when the account has one, else the first
  owner rule that holds, else a member of the pool chosen by a hash of the account id (stable
  across workers and replays), else null;
- `contacts`: users of the `titles` signal (by user id), then the most recently active users of
  the `active` signal, at most `max`.

Everything is computed from the decision's values and the account's state in event time, so the
backtest and the worker write the same playbook; the cooldown's last alert per play is kept in the
decision (`alerted`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.model.spec import Model, Playbook, Route
from streams.scoring.transitions import QUALIFIED, SEGMENT_ENTERED, iso_ms
from streams.state.account import AccountState, Decision

_HOUR_MS = 3_600_000


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v


def _hours(ms: int) -> float | int:
    hours = ms / _HOUR_MS
    return int(hours) if hours == int(hours) else hours


def pool_member(pool: tuple[str, ...], account_id: str) -> str:
    """A deterministic member of `pool` for an account (the same in every process)."""
    h = int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=8).digest(), "big")
    return pool[h % len(pool)]


class Plays:
    """One per scorer whose model has a playbook."""

    def __init__(self, model: Model, playbook: Playbook) -> None:
        self.pb = playbook
        index = {s.name: i for i, s in enumerate(model.signals)}
        self.titles = index.get(playbook.titles) if playbook.titles else None
        self.active = index.get(playbook.active) if playbook.active else None
        self.active_bucket = (
            model.signals[self.active].bucket_ms or 0 if self.active is not None else 0
        )

    def band(self, values: dict[str, Any]) -> tuple[float | int | None, str]:
        """(the deal size, its band): the lowest band when it cannot be computed."""
        try:
            size = _number(self.pb.deal_size.fn(values))
        except (ArithmeticError, TypeError, ValueError):
            size = None
        band = self.pb.bands[0][0]
        if size is not None:
            for name, floor in self.pb.bands:
                if size >= floor:
                    band = name
        return size, band

    def owner(self, account_id: str, values: dict[str, Any]) -> tuple[str | None, str | None]:
        pb = self.pb
        if pb.owner_trait is not None:
            value = values.get(pb.owner_trait)
            if isinstance(value, str) and value.strip():
                return value, "trait"
        for rule in pb.owner_rules:
            if bool(rule.when.fn(values)):
                return rule.owner, "rule"
        if pb.owner_pool:
            return pool_member(pb.owner_pool, account_id), "pool"
        return None, None

    def contacts(self, state: AccountState) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        taken: set[str] = set()
        limit = self.pb.max_contacts
        if self.titles is not None:
            name = self.pb.titles
            for user in sorted(state.signals[self.titles].keys):
                if len(out) >= limit:
                    return out
                taken.add(user)
                out.append({"user_id": user, "why": name})
        if self.active is not None:
            name = self.pb.active
            keys = state.signals[self.active].keys
            for user, bucket in sorted(keys.items(), key=lambda kv: (-kv[1], kv[0])):
                if len(out) >= limit:
                    break
                if user not in taken:
                    out.append(
                        {
                            "user_id": user,
                            "why": name,
                            "last_active": iso_ms(bucket * self.active_bucket),
                        }
                    )
        return out

    def play(
        self,
        account_id: str,
        kind: str,
        segment: str | None,
        values: dict[str, Any],
        state: AccountState,
        d: AccountState | Decision | None,
        at: int,
    ) -> dict[str, Any]:
        """The playbook of one transition (kind, segment) at `at`; an alert is recorded in
        `d.alerted` for the cooldown (`d` None: the account's standing playbook, nothing
        recorded: what the lookup API shows)."""
        pb = self.pb
        size, band = self.band(values)
        seg_route = pb.segments.get(segment) if segment is not None else None
        route: Route = seg_route if seg_route is not None else pb.routes[band]
        play = segment if segment is not None and seg_route is not None else QUALIFIED
        alert = d is not None and (
            kind == QUALIFIED or (kind == SEGMENT_ENTERED and seg_route is not None)
        )
        cooldown_until = None
        if alert and d is not None and pb.cooldown_ms:
            last = d.alerted.get(play)
            if last is not None and at < last + pb.cooldown_ms:
                alert = False
                cooldown_until = iso_ms(last + pb.cooldown_ms)
            else:
                d.alerted[play] = at
        owner, owner_from = self.owner(account_id, values)
        out: dict[str, Any] = {
            "play": play,
            "route": route.route,
            "urgency_hours": _hours(route.respond_within_ms),
            "alert": alert,
            "respond_by": iso_ms(at + route.respond_within_ms) if alert else None,
            "deal_size": size,
            "deal_band": band,
            "owner": owner,
            "owner_from": owner_from,
            "contacts": self.contacts(state),
        }
        if cooldown_until is not None:
            out["cooldown_until"] = cooldown_until
        return out
