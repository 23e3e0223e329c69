"""How far a partition's stream time may go around a model switch
(`streams.app.lifecycle.versions`)."""

from __future__ import annotations

from typing import Any

from streams.app.accounts import PartitionWork
from streams.app.lifecycle.switchlog import SwitchLog, announcement, report
from streams.app.lifecycle.versions import Versions, applied_bound
from streams.app.watermark import DIRECT, NO_TIME, NO_TIME_END, StreamClock
from streams.model.spec import Model
from streams.scoring.engine import Scorer
from tests.unit.backtest.test_switch import V1, V2
from tests.unit.scoring.util import model

M1, M2 = model(V1), model(V2)


def _setup() -> tuple[Versions, SwitchLog, list[tuple[str, dict[int, int | None]]]]:
    log = SwitchLog(partitions=2)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    sent: list[tuple[str, dict[int, int | None]]] = []
    versions = Versions(Scorer(M1), log, send_report=lambda i, b, _h: sent.append((i, b)))
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


class _Backfill:
    """What `Versions` sees of `streams.app.lifecycle.backfill.Backfill` (its Kafka side is
    tested on a broker, tests/integration/test_worker_backfill.py)."""

    def __init__(self, m: Model, owned: set[int]) -> None:
        self.model, self.version, self.owned = m, m.version, owned
        self.running, self.caught_up = False, False
        self.history_from: int | None = None
        self.floor: int | None = None

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def ready(self) -> bool:
        return self.caught_up

    def set_owned(self, parts: set[int]) -> None:
        self.owned = parts

    def set_floor(self, floor: int) -> None:
        self.floor = floor


WINDOWED = V2.replace("window: 7d}\n  seats", "window: 3d}\n  seats")


def test_a_switch_to_other_signals_reports_only_once_its_backfill_caught_up() -> None:
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    sent: list[tuple[str, dict[int, int | None], int | None]] = []
    made: list[_Backfill] = []

    def make(m: Model, owned: set[int]) -> Any:
        made.append(_Backfill(m, owned))
        return made[-1]

    versions = Versions(
        Scorer(M1), log, send_report=lambda i, b, h: sent.append((i, b, h)), make_backfill=make
    )
    work = _work(0)
    works = {0: work}
    versions.tend(works, lambda: {0})
    assert not made  # nothing to backfill
    new = model(WINDOWED)
    line = log.apply(announcement(new, WINDOWED, "a"))
    assert line is not None and "builds them from the input topic" in line
    assert log.pending is not None and log.pending.backfill
    work.clock.merge({0: (5_000, 10, True), 1: (7_000, 3, True)})
    versions.tend(works, lambda: {0})
    assert len(made) == 1 and made[0].running and made[0].owned == {0}
    assert made[0].floor == 5_000  # the switch cannot come before what partition 0 applied
    assert versions.limit(work) == NO_TIME_END and not sent  # not frozen while it catches up
    made[0].caught_up, made[0].history_from = True, 1_234
    assert versions.limit(work) == 5_000
    assert sent == [(new.fingerprint, {0: 5_000}, 1_234)]
    work.clock.merge({0: (9_000, 11, True), 1: (9_500, 4, True)})
    versions.tend(works, lambda: {0})
    assert made[0].floor == 5_000  # frozen at its report: the switch may be right there
    log.apply(report(new.fingerprint, {0: 5_000}, "a", history_from=1_234))
    assert log.backfills == {2: 1_234}
    sw = versions.due(work)
    assert sw is not None and sw.at_ms == 5_000 and not versions.awaits_backfill(sw)
    made[0].caught_up = False  # a restart of the backfill (a partition gained, say)
    assert versions.awaits_backfill(sw)
    scorer = versions.scorer(2)  # partial from the history's start for its new signals
    assert scorer.partial == [("msgs", 1_234 + 3 * 86_400_000)]
    work.version = 2  # switched: nothing more to backfill
    versions.tend(works, lambda: {0})
    assert not made[0].running and versions.backfill is None and len(made) == 1


def test_the_latest_start_of_history_reported_counts() -> None:
    log = SwitchLog(partitions=2)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    new = model(WINDOWED)
    log.apply(announcement(new, WINDOWED, "a"))
    log.apply(report(new.fingerprint, {0: 10}, "a"))  # the whole history
    log.apply(report(new.fingerprint, {1: 20}, "b", history_from=300))  # retention cut it
    assert [(sw.at_ms, sw.model.version) for sw in log.live] == [(0, 1), (20, 2)]
    assert log.backfills == {2: 300}


def test_a_restarted_stage_reads_the_states_of_a_model_with_other_signals() -> None:
    """After a switch to other signals the table holds the new model's states: a stage made
    from the log (a restart) decodes them before anything asks for that version's scorer."""
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    new = model(WINDOWED)
    log.apply(announcement(new, WINDOWED, "a"))
    log.apply(report(new.fingerprint, {0: 5_000}, "a"))
    written = Scorer(new).new_state(())
    data = Scorer(new).codec.encode(written)
    first = Scorer(M1)
    assert first.codec.decode(data) is None  # another model's signals: not read as ours
    Versions(first, log)
    state = first.codec.decode(data)
    assert state is not None and state.model == Scorer(new).model_tag  # kept as it is
