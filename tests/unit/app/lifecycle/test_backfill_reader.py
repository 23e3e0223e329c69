"""The backfill reader's bound (`streams.app.lifecycle.backfill`), without a broker: what it absorbs
before the switch time is known, in which order, and what it leaves to the live path. (Its
reading is tested on Kafka: tests/integration/test_worker_backfill.py.)"""

from __future__ import annotations

from streams.app.ingest.config import partition_of
from streams.app.lifecycle.backfill import Backfill, BackfillSource
from streams.events.parse import event_from_obj
from streams.events.types import Event
from tests.unit.backtest.test_switch import V1
from tests.unit.scoring.util import HOUR, T0, iso, model

PARTS = 4
V2 = V1.replace("version: 1", "version: 2").replace("window: 7d}\n  seats", "window: 3d}\n  seats")


def _reader() -> Backfill:
    return Backfill(model(V2), BackfillSource("localhost:1", "in"), PARTS, set(range(PARTS)))


def _ev(obj: dict[str, object]) -> Event:
    ev = event_from_obj(obj)
    assert isinstance(ev, Event), ev
    return ev


def _group(ts: int, user: str, account: str) -> Event:
    return _ev(
        {
            "type": "group",
            "messageId": f"g-{user}",
            "timestamp": iso(ts),
            "userId": user,
            "groupId": account,
            "traits": {},
        }
    )


def _msg(ts: int, user: str, mid: str) -> Event:
    return _ev(
        {
            "type": "track",
            "event": "Message Sent",
            "messageId": mid,
            "timestamp": iso(ts),
            "userId": user,
            "properties": {},
        }
    )


def _msgs(bf: Backfill, account: str) -> object:
    state = bf._states.get(partition_of(account, PARTS), {}).get(account)
    return None if state is None else bf.scorer.plan.values(state)["msgs"]


def test_an_event_after_the_floor_waits_and_so_does_every_later_one() -> None:
    """The group call that resolves a user waits at the floor; a later track of that user must
    not be routed before it (it would be lost as missing_account)."""
    bf = _reader()
    bf.set_floor(T0 + 2 * HOUR)
    with bf._lock:
        bf._absorb(_msg(T0 + HOUR, "u9", "early"))  # a user in no group yet: not routable
        bf._absorb(_group(T0 + 3 * HOUR, "u1", "acme"))  # at or after the floor: waits
    bf.set_floor(T0 + 5 * HOUR)  # stream time moved on meanwhile
    with bf._lock:
        bf._absorb(_msg(T0 + 4 * HOUR, "u1", "m1"))  # below the floor now, but behind it
    assert _msgs(bf, "acme") is None and len(bf._parked) == 2
    with bf._lock:
        bf._unpark()
    assert _msgs(bf, "acme") == 1 and not bf._parked


def test_once_the_switch_time_is_known_what_is_at_or_after_it_is_the_live_paths() -> None:
    bf = _reader()
    bf.set_floor(T0 + 2 * HOUR)
    with bf._lock:
        bf._absorb(_group(T0, "u1", "acme"))
        for i, h in enumerate((1, 3, 5, 7)):
            bf._absorb(_msg(T0 + h * HOUR, "u1", f"m{i}"))
    assert _msgs(bf, "acme") == 1  # before the floor; the rest wait
    bf._at = T0 + 6 * HOUR  # what `handover` sets
    with bf._lock:
        bf._unpark()
        bf._absorb(_msg(T0 + 5 * HOUR + 1, "u1", "late-but-before-t"))
        bf._absorb(_msg(T0 + 8 * HOUR, "u1", "after-t"))
    assert _msgs(bf, "acme") == 4 and not bf._parked  # m0, m1, m2 and the late one


def test_partitions_not_owned_are_not_kept_and_a_gained_one_restarts_the_reading() -> None:
    bf = _reader()
    acme = partition_of("acme", PARTS)
    bf.set_owned(set(range(PARTS)) - {acme})
    with bf._lock:
        bf._absorb(_group(T0, "u1", "acme"))
        bf._absorb(_msg(T0 + HOUR, "u1", "m1"))
    assert _msgs(bf, "acme") is None and not bf._restart
    bf.caught_up.set()
    bf.set_owned(set(range(PARTS)))
    assert bf._restart and not bf.ready()


def test_a_partition_handed_over_then_lost_needs_its_history_again() -> None:
    bf = _reader()
    bf._handed, bf._owned = {0}, {1, 2, 3}
    bf.caught_up.set()
    bf.set_owned({0, 1, 2, 3})
    assert not bf._restart  # still ours, switched: nothing to read again
    bf.set_owned({1, 2, 3})  # revoked (during its sweep, say)
    bf.set_owned({0, 1, 2, 3})
    assert bf._restart and not bf.ready()
