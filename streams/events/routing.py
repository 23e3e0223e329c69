"""Where each event goes: straight to its account, through the user stage, or both.

The worker and the backtest share this, so both deliver the same events to the same accounts:

- An event that names its account (`context.groupId`, or a `group` call's `groupId`) goes
  straight to that account, keeping the input's per-account order.
- The *user stage* (state keyed by user: membership from group calls, the user traits the model
  reads) sees events that name no account, group calls (to learn membership), and — when the
  model reads user traits — identify calls. It delivers:
  - events that name no account, to the account the user joined (a track from a user who joined
    none is rejected as `missing_account`; an identify is remembered until the user joins);
  - on a group call that changes a user's membership, a *synthetic identify* carrying the user's
    stored traits (messageId `<group messageId>:traits`), so an account learns the title of a
    user who identified before joining it.
"""

from __future__ import annotations

from streams.events.resolver import UserRecord, route
from streams.events.types import Event, EventType, Reject

Delivery = tuple[str, Event]


def direct_account(ev: Event) -> str | None:
    """The account an event names itself, or None."""
    return ev.account_id or None


def needs_user_stage(ev: Event, user_trait_keys: frozenset[str]) -> bool:
    if not ev.account_id:
        return True
    if ev.type is EventType.GROUP:
        return True
    return ev.type is EventType.IDENTIFY and bool(user_trait_keys)


def user_stage(
    ev: Event, user: UserRecord | None, trait_keys: frozenset[str]
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
        if moved and record.traits:
            deliveries.append(
                (
                    named,
                    Event(
                        type=EventType.IDENTIFY,
                        message_id=f"{ev.message_id}:traits",
                        ts=ev.ts,
                        user_id=ev.user_id,
                        account_id=named,
                        traits=dict(record.traits),
                        user_traits=dict(record.traits),
                    ),
                )
            )
    return deliveries, None, record


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
    """The direct path and the user stage over an in-memory user map: what the backtest runs.
    The worker runs the same two steps in two agents, with the user map in a Faust table."""

    def __init__(self, user_trait_keys: frozenset[str]) -> None:
        self.trait_keys = user_trait_keys
        self.users: dict[str, UserRecord] = {}

    def route(self, ev: Event) -> tuple[list[Delivery], Reject | None]:
        out: list[Delivery] = []
        account = direct_account(ev)
        if account:
            out.append((account, ev))
        if ev.user_id and needs_user_stage(ev, self.trait_keys):
            more, reject, record = user_stage(ev, self.users.get(ev.user_id), self.trait_keys)
            if record is not None:
                self.users[ev.user_id] = record
            if reject is not None:
                return out, reject
            out.extend(more)
        return out, None
