"""How far a partition's stream time may go around a model switch (`streams.app.versions`)."""

from __future__ import annotations

from streams.app.accounts import PartitionWork
from streams.app.switchlog import SwitchLog, announcement, report
from streams.app.versions import Versions, applied_bound
from streams.app.watermark import DIRECT, NO_TIME, NO_TIME_END, StreamClock
from streams.scoring.engine import Scorer
from tests.unit.backtest.test_switch import V1, V2
from tests.unit.scoring.util import model

M1, M2 = model(V1), model(V2)


def _setup() -> tuple[Versions, SwitchLog, list[tuple[str, dict[int, int | None]]]]:
    log = SwitchLog(partitions=2)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    sent: list[tuple[str, dict[int, int | None]]] = []
    versions = Versions(Scorer(M1), log, send_report=lambda i, b: sent.append((i, b)))
    return versions, log, sent


def _work(part: int) -> PartitionWork:
    return PartitionWork(part, StreamClock(0, (DIRECT,), idle_hold_s=0.0), version=1)


def test_no_switch_no_limit() -> None:
    versions, _, sent = _setup()
    assert versions.limit(_work(0)) == NO_TIME_END and not sent


def test_an_announced_switch_freezes_where_stream_time_is_and_reports_once() -> None:
    versions, log, sent = _setup()
    log.apply(announcement(M2, V2, "a"))
    work = _work(0)
    assert versions.limit(work) == NO_TIME_END and not sent  # no stream time yet: wait
    work.clock.merge({0: (5_000, 10, True), 1: (7_000, 3, True)})
    assert applied_bound(work.clock) == 5_000
    assert versions.limit(work) == 5_000
    assert versions.limit(work) == 5_000
    assert sent == [(M2.fingerprint, {0: 5_000})]
    work.clock.merge({0: (9_000, 11, True), 1: (9_500, 4, True)})
    assert versions.limit(work) == 5_000  # frozen, whatever the marks say


def test_an_idle_partition_reports_everything_it_read() -> None:
    versions, log, sent = _setup()
    log.apply(announcement(M2, V2, "a"))
    work = _work(1)
    work.clock.merge({0: (5_000, 10, False), 1: (7_000, 3, False)})
    assert work.clock.idle and applied_bound(work.clock) == 7_001
    assert versions.limit(work) == 7_001 and sent == [(M2.fingerprint, {1: 7_001})]


def test_an_idle_app_reports_its_kept_state_and_may_switch() -> None:
    """Nothing read since assignment (every input partition at NO_TIME, idle): the partition
    reports the latest clock of its restored accounts, and switches without stream time."""
    versions, log, sent = _setup()
    log.apply(announcement(M2, V2, "a"))
    work = _work(0)
    work.max_clock = 42_000
    assert versions.limit(work) == NO_TIME_END and not sent  # no mark heard yet
    work.clock.merge({0: (NO_TIME, -1, False), 1: (NO_TIME, -1, False)})
    assert work.clock.value is None and work.clock.heard_all
    versions.limit(work)
    assert sent == [(M2.fingerprint, {0: 42_001})]
    empty = _work(1)
    empty.clock.merge({0: (NO_TIME, -1, False)})
    versions.limit(empty)
    assert sent[-1] == (M2.fingerprint, {1: None})  # no state at all: nothing applied ever

    log.apply(report(M2.fingerprint, {0: 42_001, 1: None}, "a"))
    sw = versions.due(work)
    assert sw is not None and sw.at_ms == 42_001
    assert versions.limit(work) == 42_001
    assert versions.can_switch(work, sw.at_ms)


def test_a_partition_switches_only_once_stream_time_reached_the_switch() -> None:
    versions, log, _ = _setup()
    log.apply(announcement(M2, V2, "a"))

    log.apply(report(M2.fingerprint, {0: 8_000, 1: 6_000}, "a"))
    work = _work(1)
    work.clock.merge({0: (7_000, 1, True), 1: (9_000, 1, True)})
    assert versions.limit(work) == 8_000
    assert not versions.can_switch(work, 8_000)
    work.clock.merge({0: (8_000, 2, True)})
    assert versions.can_switch(work, 8_000)
    assert versions.scorer(2).model.version == 2
    assert versions.scorer(2).effective_from_ms == 8_000


def test_a_new_owner_freezes_where_the_previous_owner_reported() -> None:
    """A partition reported, then moved to another worker before the switch was agreed: the new
    owner (which re-reads marks that may run past that report) freezes at the report."""
    versions, log, sent = _setup()
    log.apply(announcement(M2, V2, "a"))
    log.apply(report(M2.fingerprint, {0: 5_000}, "old owner"))
    work = _work(0)
    work.clock.merge({0: (9_000, 10, True), 1: (9_500, 4, True)})
    assert versions.limit(work) == 5_000 and not sent
