"""Readiness and the stall guard (`streams.app.health`)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from streams.app.health import Readiness, StallGuard, WorkerStalled

READY = Readiness(assigned=True, rebalancing=False, recovering=False, broker_reachable=True)
STUCK = Readiness(assigned=True, rebalancing=True, recovering=False, broker_reachable=True)
NO_BROKER = Readiness(assigned=True, rebalancing=True, recovering=False, broker_reachable=False)
RESTORING = Readiness(assigned=True, rebalancing=False, recovering=True, broker_reachable=True)


def test_ready_needs_every_condition() -> None:
    assert READY.ready
    for r in (STUCK, NO_BROKER, RESTORING):
        assert not r.ready
    assert not Readiness(False, False, False, True).ready
    assert READY.as_json() == {
        "ready": True,
        "assigned": True,
        "rebalancing": False,
        "recovering": False,
        "broker_reachable": True,
    }


def test_unready_while_the_broker_answers_past_the_limit_raises() -> None:
    guard = StallGuard(60)
    guard.check(STUCK, 100.0)
    guard.check(STUCK, 159.0)
    with pytest.raises(WorkerStalled, match="not been ready for 60 s"):
        guard.check(STUCK, 160.0)


@pytest.mark.parametrize("pause", [READY, NO_BROKER, RESTORING])
def test_ready_a_lost_broker_or_a_restore_starts_the_count_again(pause: Readiness) -> None:
    guard = StallGuard(60)
    guard.check(STUCK, 100.0)
    guard.check(STUCK, 150.0)
    guard.check(pause, 151.0)  # not a stall: the count starts again
    guard.check(STUCK, 152.0)
    guard.check(STUCK, 211.0)
    with pytest.raises(WorkerStalled):
        guard.check(STUCK, 212.0)


def test_zero_turns_it_off() -> None:
    guard = StallGuard(0)
    guard.check(STUCK, 0.0)
    guard.check(STUCK, 1e9)


def test_a_failed_worker_that_does_not_stop_exits_anyway() -> None:
    """The hard exit after a failure: the process ends with 1 even if it would hang."""
    code = (
        "from streams.app.health import exit_if_stuck_stopping as e\n"
        "import time\n"
        "e(0.3)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert time.monotonic() - started < 10
    assert "did not stop within 0 s: exiting now" in res.stderr
