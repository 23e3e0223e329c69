"""Is the worker ready, and is it stuck?

Ready: partitions assigned, table recovery finished, no rebalance under way, the broker answers
(`streams.app.broker_watch`). A worker that stays unready while the broker answers and nothing is
being restored is wedged: some client waits for an answer that will not come (a CI run once
showed a worker silent and unready for two minutes after its broker came back). Readiness alone
only takes it out of service; `StallGuard` makes it say so, with the stacks of its asyncio tasks,
and exit non-zero, so its supervisor (Kubernetes, systemd) starts it afresh from its committed
offsets and kept state.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import faust
    from faust.tables.manager import TableManager

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Readiness:
    assigned: bool  # partitions assigned (no revocation since the last rebalance completed)
    rebalancing: bool
    recovering: bool  # restoring tables, or not yet started to
    broker_reachable: bool

    @property
    def ready(self) -> bool:
        return (
            self.assigned and self.broker_reachable and not self.rebalancing and not self.recovering
        )

    def as_json(self) -> dict[str, bool]:
        return {
            "ready": self.ready,
            "assigned": self.assigned,
            "rebalancing": self.rebalancing,
            "recovering": self.recovering,
            "broker_reachable": self.broker_reachable,
        }


def readiness(app: faust.App, assigned: bool, broker_reachable: bool) -> Readiness:
    """The worker's readiness: `assigned` (no revocation since the last rebalance completed)
    and `broker_reachable` are the worker's to say, the rest the Faust app's."""
    # App.tables is typed as TableManagerT, which lacks `recovery`; it is a TableManager.
    recovery = cast("TableManager", app.tables).recovery
    return Readiness(
        assigned=assigned,
        rebalancing=bool(app.rebalancing),
        recovering=bool(recovery.in_recovery or not recovery.completed.is_set()),
        broker_reachable=broker_reachable,
    )


class WorkerStalled(RuntimeError):
    """Raised from the worker's health timer: the worker exits so its supervisor restarts it."""


class StallGuard:
    """Counts how long the worker has been unready while it should not be (the broker answers,
    no table is being restored); past `limit_s` it raises `WorkerStalled`. 0 turns it off."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: float | None = None

    def check(self, r: Readiness, now: float) -> None:
        if self.limit_s <= 0 or r.ready or not r.broker_reachable or r.recovering:
            self._since = None
            return
        if self._since is None:
            self._since = now
            return
        stuck = now - self._since
        if stuck >= self.limit_s:
            raise WorkerStalled(
                f"the worker has not been ready for {stuck:.0f} s although the broker answers "
                f"and nothing is being restored ({r.as_json()}): exiting so that its "
                "supervisor starts it again (it resumes from its committed offsets and kept "
                "state). What its tasks were waiting for is logged above; please report it."
            )


def log_task_stacks() -> None:
    """The stacks of every asyncio task (mode's `cry`, as SIGUSR1 prints them), into the log."""
    from mode.utils.logging import cry

    out = io.StringIO()
    cry(file=out)
    log.error("stacks of the worker's threads and tasks:\n%s", out.getvalue())


# A failed worker's stop (Faust stopping its agents, committing, leaving the group) was seen to
# wait 30 s on a broker that would not answer: past this, the process exits regardless. At-least-
# once makes that safe: nothing was committed past what was delivered.
FAIL_EXIT_S = 15.0


def exit_if_stuck_stopping(after_s: float) -> None:
    """From now on, the process has `after_s` seconds to end on its own; then it exits (1)."""

    def hard_exit() -> None:
        log.error("the failed worker did not stop within %.0f s: exiting now", after_s)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(after_s, hard_exit)
    timer.daemon = True
    timer.start()
