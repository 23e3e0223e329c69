"""Where each event goes. The worker and the backtest share this, so both deliver the same
events to the same accounts, in the same order when the input is keyed by account or user.

Two steps:

1. **Local routing** (`route_local`), per input partition, over the users whose calls that
   partition carried: membership from group calls, the user traits the model reads. An event
   that names its account (`context.groupId`, a group call's `groupId`) or whose user joined a
   group earlier in the partition goes straight to the account — so with keyed input every
   event of an account takes one path, in input order. A group call that moves a user also
   delivers a *synthetic identify* with the user's stored traits (messageId
   `<group messageId>:traits`), so the account learns the title of a user who identified
   before joining it.
2. **The user stage** (`user_stage`), keyed by user across all partitions: the fallback for
   users whose group call sits in another partition (unkeyed input). It learns membership from
   the group calls forwarded to it and routes the tracks and identifies local routing could not
   resolve; a track from a user who joined no group is rejected as `missing_account`.
"""

from __future__ import annotations

from streams.events.resolver import UserRecord, route
from streams.events.types import Event, EventType, Reject

Delivery = tuple[str, Event]
_TRACK = EventType.TRACK


def route_local(
    ev: Event, user: UserRecord | None, trait_keys: frozenset[str]
) -> tuple[list[Delivery], bool, UserRecord | None]:
    """(deliveries straight to accounts, whether the user stage must see the event, the user's
    new local record or None if unchanged)."""
    if ev.type is EventType.GROUP:
        named = ev.account_id
        if not named:  # the parser rejects these; kept total for callers that do not
            return [], True, None
        _, record = route(_copy(ev), user, trait_keys)
        deliveries: list[Delivery] = [(named, ev)]
        stored = record if record is not None else user
        moved = user is None or user.account_id != named
        if moved and stored is not None and stored.traits:
            deliveries.append((named, _synthetic_identify(ev, named, stored.traits)))
        return deliveries, True, record
    account = ev.account_id or (user.account_id if user is not None else None)
    if ev.type is EventType.IDENTIFY:
        _, record = route(_copy(ev), user, trait_keys)
        if account:
            return [(account, ev)], False, record
        return [], True, record  # remembered here, and told to the user stage
    if account:
        return [(account, ev)], False, None
    return [], True, None


def _synthetic_identify(group: Event, account: str, traits: dict[str, object]) -> Event:
    return Event(
        type=EventType.IDENTIFY,
        message_id=f"{group.message_id}:traits",
        ts=group.ts,
        user_id=group.user_id,
        account_id=account,
        traits=dict(traits),
        user_traits=dict(traits),
    )


def user_stage(
    ev: Event, user: UserRecord | None, trait_keys: frozenset[str], synthetic: bool = True
) -> tuple[list[Delivery], Reject | None, UserRecord | None]:
    """(deliveries, reject, the user's new record or None if unchanged)."""
    named = ev.account_id
    routed, record = route(_copy(ev), user, trait_keys)
    if isinstance(routed, Reject):
        return [], routed, record
    deliveries: list[Delivery] = []
    if not named and routed is not None:
        delivered = _copy(ev)
        if ev.type is EventType.IDENTIFY:
            delivered.user_traits = _traits(record, user)
        deliveries.append((routed, delivered))
    if ev.type is EventType.GROUP and named and record is not None:
        moved = user is None or user.account_id != named
        if moved and record.traits and synthetic:
            deliveries.append((named, _synthetic_identify(ev, named, record.traits)))
    return deliveries, None, record


def route_user(
    ev: Event, user: UserRecord | None, trait_keys: frozenset[str]
) -> tuple[list[Delivery], Reject | None, UserRecord | None]:
    """Both steps for one user whose every call this caller sees, in time order: what the
    worker's user stage runs when the ingest routed nothing locally (input keyed any other way
    than by user), and exactly what `Router.route` gives (its local map then holds every
    user). (deliveries, reject, the user's new record or None if unchanged)."""
    out, forward, record = route_local(ev, user, trait_keys)
    if out or not forward or ev.type is not _TRACK:
        return out, None, record  # delivered, or an identify remembered until a group call
    _, reject, _ = user_stage(ev, user, trait_keys)  # a track of a user in no group: rejected
    return [], reject, None


def _copy(ev: Event) -> Event:
    """A shallow copy, as `dataclasses.replace(ev)` makes, without its per-call field walk."""
    return Event(
        ev.type,
        ev.message_id,
        ev.ts,
        ev.user_id,
        ev.account_id,
        ev.event,
        ev.properties,
        ev.traits,
        ev.user_traits,
    )


def _traits(record: UserRecord | None, before: UserRecord | None) -> dict[str, object]:
    current = record if record is not None else before
    return dict(current.traits) if current is not None else {}


class Router:
    """Both steps over in-memory maps, as the worker runs them for one input partition: what
    the backtest runs. (The worker keeps the local maps per input partition in its ingest stage
    and the user stage's in a Faust table.)"""

    def __init__(self, user_trait_keys: frozenset[str]) -> None:
        self.trait_keys = user_trait_keys
        self.local: dict[str, UserRecord] = {}
        self.users: dict[str, UserRecord] = {}  # the user stage's

    def route(self, ev: Event) -> tuple[list[Delivery], Reject | None]:
        uid = ev.user_id
        if not uid:
            return ([(ev.account_id, ev)] if ev.account_id else []), None
        if ev.type is _TRACK:  # most events: `route_local`'s track case, inlined
            account = ev.account_id
            if not account:
                user = self.local.get(uid)
                account = user.account_id if user is not None else None
            if account:
                return [(account, ev)], None
        out, forward, record = route_local(ev, self.local.get(uid), self.trait_keys)
        if record is not None:
            self.local[uid] = record
        if not forward:
            return out, None
        # Local routing already delivered the group call's synthetic identify, if any.
        synthetic = not (ev.type is EventType.GROUP and len(out) > 1)
        more, reject, staged = user_stage(ev, self.users.get(uid), self.trait_keys, synthetic)
        if staged is not None:
            self.users[uid] = staged
        return out + more, reject
