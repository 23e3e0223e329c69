"""Which account an event belongs to, from what the user's earlier calls said.

Segment `track` calls often carry no account: the account is known from the user's `group`
call (membership), and user traits the model reads (e.g. `title`) come from `identify` calls.
So the resolver keeps one small record per user: the latest group joined and the latest value of
each trait the model reads.

A functional core, `route()`, takes the event and the user's record and returns where to send the
event plus the new record. It has no storage of its own so the same rules run over a plain dict
in the backtest (`AccountResolver`) and over a Faust table keyed by user id in the worker, where
the record lives as `UserRecord.to_bytes()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from streams.events.types import Event, EventType, Reject, RejectReason
from streams.model.spec import Model, SignalKind

__all__ = ["UserRecord", "route", "AccountResolver", "user_trait_keys"]

_GROUP = EventType.GROUP
_IDENTIFY = EventType.IDENTIFY
_encode = msgspec.msgpack.Encoder().encode


class _Wire(msgspec.Struct, array_like=True):
    account_id: str | None
    traits: dict[str, Any]
    seen: dict[int, int] = msgspec.field(default_factory=dict)  # absent in older records


_decode_record = msgspec.msgpack.Decoder(_Wire).decode


@dataclass(slots=True)
class UserRecord:
    """What is remembered about one user. Treated as immutable: `route` returns a new one."""

    account_id: str | None  # the groupId of the user's latest group call; None before any
    traits: dict[str, Any] = field(default_factory=dict)  # only keys the model reads
    # The worker's user stage only: per input partition, the offset of the last of this user's
    # events it routed, so an event re-read after a crash or rebalance is not routed again
    # against the newer record. Not part of routing (`route` carries it over unchanged).
    seen: dict[int, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        if self.seen:
            return _encode((self.account_id, self.traits, self.seen))
        return _encode((self.account_id, self.traits))

    @classmethod
    def from_bytes(cls, data: bytes) -> UserRecord:
        """Inverse of `to_bytes`; raises `msgspec.DecodeError` on foreign bytes."""
        wire = _decode_record(data)
        return cls(wire.account_id, wire.traits, wire.seen)


def route(
    ev: Event, user: UserRecord | None, trait_keys: frozenset[str]
) -> tuple[str | Reject | None, UserRecord | None]:
    """(where `ev` goes, the user's new record).

    Where: an account id; a `Reject`; or None when the event is absorbed (an identify from a user
    with no account yet: its traits are remembered and ride along with the user's later group
    call, so nothing is lost). New record: None when unchanged or nothing to keep.

    Routed identify and group events get `ev.user_traits` = the user's stored traits (keys in
    `trait_keys` only), so the account sees e.g. the `title` of each of its users.
    """
    membership = user.account_id if user is not None else None
    stored = user.traits if user is not None else {}

    if ev.type is _GROUP:
        group_id = ev.account_id
        if not group_id:
            return _reject_group(ev), None
        traits = _restrict(stored, trait_keys)
        changed = user is None or membership != group_id or len(traits) != len(stored)
        ev.user_traits = traits
        return group_id, UserRecord(group_id, dict(traits)) if changed else None

    if ev.type is _IDENTIFY:
        merged = _restrict(stored, trait_keys)
        changed = len(merged) != len(stored)
        new_traits = ev.traits
        for key in trait_keys:
            if key in new_traits:
                value = new_traits[key]
                if key not in merged or merged[key] != value:
                    merged[key] = value
                    changed = True
        record = UserRecord(membership, merged) if changed else None
        account = ev.account_id or membership
        if not account:
            return None, record
        ev.user_traits = dict(merged)
        return account, record

    account = ev.account_id or membership
    if not account:
        return _reject_track(ev), None
    return account, None


class AccountResolver:
    """`route()` over an in-memory dict: the backtest and `pql produce` (which keys records by
    the resolved account). Memory is one small record per user seen."""

    def __init__(self, trait_keys: Iterable[str] = ()) -> None:
        self.trait_keys: frozenset[str] = frozenset(trait_keys)
        self.users: dict[str, UserRecord] = {}

    def resolve(self, ev: Event) -> str | Reject | None:
        """The account `ev` belongs to, a Reject, or None (absorbed identify). Updates state and,
        for routed identify/group events, sets `ev.user_traits`."""
        user_id = ev.user_id
        user = self.users.get(user_id) if user_id is not None else None
        target, record = route(ev, user, self.trait_keys)
        if record is not None and user_id is not None:
            self.users[user_id] = record
        return target

    def __len__(self) -> int:
        return len(self.users)


def user_trait_keys(model: Model) -> frozenset[str]:
    """The user traits `model` reads: those of its USERS_WITH_TRAIT signals."""
    return frozenset(
        s.trait for s in model.signals if s.kind is SignalKind.USERS_WITH_TRAIT and s.trait
    )


def _restrict(traits: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """A new dict of the `keys` entries of `traits` (never the same object: callers mutate)."""
    if len(traits) <= len(keys):
        return {k: v for k, v in traits.items() if k in keys}
    return {k: traits[k] for k in keys if k in traits}


def _reject_group(ev: Event) -> Reject:
    return Reject(
        RejectReason.MISSING_ACCOUNT,
        f"group call {ev.message_id} from user {ev.user_id} has no groupId",
        "$.groupId",
    )


def _reject_track(ev: Event) -> Reject:
    return Reject(
        RejectReason.MISSING_ACCOUNT,
        f"track event {ev.event!r} ({ev.message_id}) has no context.groupId and user "
        f"{ev.user_id} has not joined a group (no earlier group call)",
        "$.context.groupId",
    )
