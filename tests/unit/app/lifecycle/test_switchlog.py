"""The model history every worker reads from the control topic
(`streams.app.lifecycle.switchlog`)."""

from __future__ import annotations

from streams.app.lifecycle.switchlog import NO_REPORT, SHADOW, SwitchLog, announcement, report, stop
from tests.unit.backtest.test_switch import V1, V2
from tests.unit.scoring.util import model

M1, M2 = model(V1), model(V2)
V3 = V2.replace("version: 2", "version: 3").replace('team: "seats >= 2"', 'team: "seats >= 3"')
M3 = model(V3)


def _live(log: SwitchLog) -> list[tuple[int, int]]:
    return [(sw.at_ms, sw.model.version) for sw in log.live]


def test_the_first_model_applies_from_where_it_says() -> None:
    log = SwitchLog(partitions=2)
    assert log.apply(announcement(M1, V1, "a", at_ms=0)) is not None
    assert _live(log) == [(0, 1)]
    # the same again (another pod at its first start): nothing new
    assert log.apply(announcement(M1, V1, "b", at_ms=0)) is None
    assert _live(log) == [(0, 1)]


def test_a_switch_waits_for_every_partition_then_takes_the_latest_report() -> None:
    log = SwitchLog(partitions=3)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    log.apply(announcement(M2, V2, "a"))
    assert log.pending is not None and log.known(M2)
    log.apply(report(M2.fingerprint, {0: 500, 1: 700}, "a"))
    assert log.pending is not None and log.next_after(1) is None
    log.apply(report(M2.fingerprint, {1: 9_999}, "b"))  # a second report of 1: the first counts
    log.apply(report("another", {2: 9_999}, "b"))  # not this switch's
    line = log.apply(report(M2.fingerprint, {2: None}, "b"))  # applied nothing yet
    assert line is not None and "at stream time 700" in line
    assert _live(log) == [(0, 1), (700, 2)] and log.pending is None
    assert log.next_after(1) is log.live[1] and log.next_after(2) is None


def test_a_switch_is_after_the_previous_one_even_with_early_reports() -> None:
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=1000))
    log.apply(announcement(M2, V2, "a"))
    log.apply(report(M2.fingerprint, {0: None}, "a"))
    assert _live(log) == [(1000, 1), (1001, 2)]
    assert NO_REPORT < 0


def test_what_is_refused_is_refused_by_everyone_alike() -> None:
    log = SwitchLog(partitions=1)
    assert "refused" in (log.apply(announcement(M2, V2, "a")) or "")  # nothing to switch from
    log.refused.clear()
    log.apply(announcement(M1, V1, "a", at_ms=0))
    older = V1.replace("version: 1", "version: 0").replace("points: 50}", "points: 40}")
    assert "versions only grow" in (log.apply(announcement(model(older), older, "a")) or "")
    # Other signals are backfilled (test_versions.py), but not other user traits.
    traits = V2.replace("  seats:", "  admins: {users_with_trait: role, in: [admin]}\n  seats:")
    assert "reads other user traits" in (log.apply(announcement(model(traits), traits, "a")) or "")
    forged = dict(announcement(M2, V2, "a"), text=V3)
    assert "does not match" in (log.apply(forged) or "")
    broken = dict(announcement(M2, V2, "a"), text="name: x\n")
    assert "not a valid model" in (log.apply(broken) or "")
    assert log.pending is None and _live(log) == [(0, 1)]


def test_an_announcement_during_a_switch_is_deferred_not_refused() -> None:
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    log.apply(announcement(M2, V2, "a"))
    line = log.apply(announcement(M3, V3, "b"))
    assert line is not None and "under way" in line
    assert M3.fingerprint in log.deferred and not log.known(M3)
    log.apply(report(M2.fingerprint, {0: 50}, "a"))
    log.apply(announcement(M3, V3, "b"))  # announced again once v2 is made
    assert log.pending is not None and log.pending.model.version == 3
    assert not log.deferred


def test_a_shadow_is_agreed_like_a_switch_and_ends_when_a_version_at_or_after_it_goes_live() -> (
    None
):
    log = SwitchLog(partitions=2)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    line = log.apply(announcement(M2, V2, "a", role=SHADOW))
    assert line is not None and "shadow" in line
    assert log.pending is not None and log.pending.change_id == f"shadow:{M2.fingerprint}"
    # A report for the switch to the same definition is not one for its shadow.
    log.apply(report(M2.fingerprint, {0: 900, 1: 900}, "a"))
    assert log.pending is not None
    log.apply(report(f"shadow:{M2.fingerprint}", {0: 400, 1: 300}, "a"))
    assert [(sh.at_ms, sh.model.version) for sh in log.shadows] == [(400, 2)]
    assert log.running_shadows() == log.shadows and _live(log) == [(0, 1)]
    assert log.next_shadow(1, set()) is log.shadows[0]
    assert log.next_shadow(1, {2}) is None  # started there already
    # Announced again (another pod's config): nothing new; a second shadow of v2: refused.
    assert log.apply(announcement(M2, V2, "b", role=SHADOW)) is None
    assert log.known(M2, SHADOW) and not log.known(M2)
    assert "running already" in (log.refusal(M2, SHADOW) or "")
    # Its promotion: a switch to the same definition, after the shadow's start.
    log.apply(announcement(M2, V2, "b"))
    line = log.apply(report(M2.fingerprint, {0: 100, 1: 200}, "b"))
    assert line is not None and "at stream time 401" in line  # after the shadow's start
    assert _live(log) == [(0, 1), (401, 2)]
    assert log.running_shadows() == []
    assert log.next_shadow(2, set()) is None  # ended: a partition now on v2 skips its start
    # A candidate not after the live version cannot shadow it.
    assert "must be after the live one's" in (log.refusal(M2, SHADOW) or "")
    assert log.refusal(M3, SHADOW) is None


def test_a_stopped_shadow_runs_no_more_and_is_never_run_again() -> None:
    log = SwitchLog(partitions=1)
    log.apply(announcement(M1, V1, "a", at_ms=0))
    log.apply(announcement(M2, V2, "a", role=SHADOW))
    log.apply(report(f"shadow:{M2.fingerprint}", {0: 400}, "a"))
    assert [sh.model.version for sh in log.running_shadows()] == [2]
    assert log.apply(stop(2, f"shadow:{M1.fingerprint}", "ops")) is None  # not a running one
    line = log.apply(stop(2, f"shadow:{M2.fingerprint}", "ops"))
    assert line is not None and "stopped" in line
    assert log.running_shadows() == [] and log.stopped == {2}
    assert log.next_shadow(1, set()) is None  # a partition that had not started it: never
    assert log.apply(announcement(M2, V2, "b", role=SHADOW)) is None  # a pod's old config
    edited = model(V2.replace("busy: ", "busier: "))
    assert "was stopped" in (log.refusal(edited, SHADOW) or "")
    assert log.refusal(M2) is None  # it may still go live (decided afresh, see the stage)
