"""Model versions in the account stage: which model decides in each partition, how far stream time
may go while a switch is being agreed, and the switch itself (`streams.app.lifecycle.switchlog`
for the protocol, `streams.scoring.switch` for what a switch does to an account).

Per by-account partition the stage keeps the version it runs (`PartitionWork.version`, stored
in the partition's table under `MODEL_KEY` once a switch there is complete, so a restart does
not switch it again). While a switch is announced and not yet agreed, the partition's stream
time is frozen at what it had applied when it reported; once the switch time T is agreed, events
before T are applied, the partition switches every account it owns at T, then goes on.

A switch to a model with other signals needs them built first
(`streams.app.lifecycle.backfill`): the stage keeps one backfill running while such a switch is
announced or made and some partition it owns has not switched; its partitions report only once
the backfill has caught up, and switch at T once it can hand their states over.

Shadow models start the same way at their agreed time S (`streams.scoring.shadow`); the versions
of the shadows a partition has started are stored under `SHADOWS_KEY`. Switches and shadow
starts are made in each partition in the order of their times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from streams.app.lifecycle.switchlog import SwitchLog
from streams.app.watermark import NO_TIME_END, StreamClock
from streams.model.spec import Model, state_fingerprint
from streams.scoring.backfill import carry, partial_windows
from streams.scoring.engine import Scorer
from streams.scoring.shadow import ShadowStart
from streams.scoring.switch import ModelSwitch
from streams.state.account import AccountState

if TYPE_CHECKING:
    from streams.app.lifecycle.backfill import Backfill
    from streams.app.partition import PartitionWork

log = logging.getLogger(__name__)

# The key, in each partition of the accounts table, of the model version that partition runs
# (no account id starts with a NUL: the parser refuses control characters in ids).
MODEL_KEY = "\x00pql:model-version"
# The versions of the shadow models the partition has started (a msgpack list).
SHADOWS_KEY = "\x00pql:shadows"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(int).decode
_decode_list = msgspec.msgpack.Decoder(list[int]).decode


def is_control_key(key: str) -> bool:
    """A key of the accounts table that is not an account (no account id starts with NUL)."""
    return key.startswith("\x00")


def encode_shadows(versions: set[int]) -> bytes:
    return _encode(sorted(versions))


def decode_shadows(data: bytes) -> set[int]:
    return set(_decode_list(data))


def encode_version(version: int) -> bytes:
    return _encode(version)


def decode_version(data: bytes) -> int:
    return _decode(data)


def applied_bound(clock: StreamClock) -> int | None:
    """Every event this partition applied is older than this (None: nothing released yet).
    With every source idle everything read was released: the latest event time read, plus 1."""
    if clock.value is None:
        return None
    return clock.value + clock.grace_ms + 1 if clock.idle else clock.value


def _floor(work: PartitionWork) -> int | None:
    """A stream time the next switch cannot come before, from this partition: where it froze
    for it (its report), or what it applied so far (its report will be at least that). Not
    the clock once frozen: marks go on moving it past the report."""
    if work.frozen is not None:
        return None if work.frozen >= NO_TIME_END else work.frozen
    return applied_bound(work.clock)


class Versions:
    """The stage's view of the app's model history (one per stage; `switchlog` is fed by
    `streams.app.lifecycle.control` on the event loop)."""

    def __init__(
        self,
        first: Scorer,
        switchlog: SwitchLog | None = None,
        send_report: Callable[[str, dict[int, int | None], int | None], None] | None = None,
        make_scorer: Callable[[ModelSwitch], Scorer] | None = None,
        on_switched: Callable[[int, float], None] | None = None,
        on_shadow_started: Callable[[int, int, float], None] | None = None,
        make_backfill: Callable[[Model, set[int]], Backfill] | None = None,
    ) -> None:
        self.first = first
        self.on_switched = on_switched  # (accounts decided again, seconds) per partition
        # (shadow version, accounts started, seconds) per partition
        self.on_shadow_started = on_shadow_started
        self.log = switchlog
        self.send_report = send_report
        self._make = make_scorer or (
            lambda sw: Scorer(sw.model, first.now_ms, effective_from_ms=sw.at_ms)
        )
        self._scorers: dict[int, Scorer] = {first.model.version: first}
        self._shadow_scorers: dict[int, Scorer] = {}
        self._stopped_seen = 0  # how many stopped shadows the scorers were told of
        self.first_version = first.model.version
        self.make_backfill = make_backfill
        self.backfill: Backfill | None = None  # the one running (`tend`)
        self._tagged = 0  # how many of the log's models the table's codec was told of
        self.accept_tags()

    def accept_tags(self) -> None:
        """Let the table's codec read the states of every model of the history: after a switch
        to other signals the table holds states of both, and a restarted or newly assigned
        partition decodes them before anything else asks for that version's scorer."""
        if self.log is None or len(self.log.live) == self._tagged:
            return
        for sw in self.log.live[self._tagged :]:
            self.first.codec.accept(state_fingerprint(sw.model)[:16])
        self._tagged = len(self.log.live)

    def scorer(self, version: int) -> Scorer:
        """The live model of `version` (every shadow of a later version running beside it)."""
        found = self._scorers.get(version)
        if found is None:
            assert self.log is not None, f"no model version {version}"
            i, sw = next((i, s) for i, s in enumerate(self.log.live) if s.model.version == version)
            found = self._scorers[version] = self._make(sw)
            if version in self.log.backfills and i > 0:
                history_from = self.log.backfills[version]
                if history_from is not None:
                    c = carry(self.log.live[i - 1].model, sw.model)
                    found.backfilled(history_from, partial_windows(sw.model, c))
            self.accept_tags()
            stopped = self.log.stopped
            signals = state_fingerprint(sw.model)
            found.shadows = [
                s
                for v, s in self._shadow_scorers.items()
                if v > version and v not in stopped and state_fingerprint(s.model) == signals
            ]
        return found

    # -- backfills ------------------------------------------------------------------------------
    def backfill_target(self, versions: list[int]) -> Model | None:
        """The model a backfill must be running for, for partitions running `versions`: one
        announced with other signals, or agreed and not yet made in one of them."""
        if self.log is None:
            return None
        for sw in self.log.live:
            v = sw.model.version
            if v in self.log.backfills and any(have < v for have in versions):
                return sw.model
        pending = self.log.pending
        if pending is not None and pending.backfill:
            return pending.model
        return None

    def tend(self, works: dict[int, PartitionWork], owned: Callable[[], set[int]]) -> None:
        """Start, feed or stop the backfill (every tenth of a second, on the event loop);
        `owned`: the by-account partitions this worker owns."""
        self.accept_tags()
        target = self.backfill_target([w.version for w in works.values()])
        bf = self.backfill
        if bf is not None and (target is None or target.version != bf.version):
            bf.stop()
            self.backfill = bf = None
        if target is None or self.make_backfill is None:
            return
        if bf is None:
            bf = self.backfill = self.make_backfill(target, owned())
            bf.start()
        else:
            bf.set_owned(owned())
        assert self.log is not None  # a target comes from it
        agreed = [sw.at_ms for sw in self.log.live if sw.model.version == target.version]
        if agreed:
            bf.agree(agreed[0])
            return
        # Only partitions still before the target bound it: one that switched already runs
        # past the switch time.
        bounds = [
            b for w in works.values() if w.version < target.version and (b := _floor(w)) is not None
        ]
        if bounds:
            bf.set_floor(max(bounds))

    def awaits_backfill(self, change: ModelSwitch | ShadowStart) -> bool:
        """Whether `change` is a switch over backfilled signals whose backfill cannot hand the
        states over yet (the partition stays at the switch time meanwhile)."""
        if not isinstance(change, ModelSwitch) or self.log is None:
            return False
        version = change.model.version
        return version in self.log.backfills and not self.backfill_ready(version)

    def backfill_ready(self, version: int) -> bool:
        bf = self.backfill
        return bf is not None and bf.version == version and bf.ready()

    def stop_backfill(self) -> None:
        if self.backfill is not None:
            self.backfill.stop()
            self.backfill = None

    def shadow_scorer(self, version: int) -> Scorer:
        """The shadow model of `version`, also set to run beside every live model before it
        (it decides an account only where the account's state has its decision)."""
        found = self._shadow_scorers.get(version)
        if found is None:
            assert self.log is not None, f"no shadow model version {version}"
            sh = next(s for s in self.log.shadows if s.model.version == version)
            found = Scorer(sh.model, self.first.now_ms, effective_from_ms=sh.at_ms)
            self._shadow_scorers[version] = found
            for v, live in self._scorers.items():
                if v < version:
                    live.shadows.append(found)
        return found

    def due(self, work: PartitionWork) -> ModelSwitch | ShadowStart | None:
        """The partition's next switch or shadow start, once its time is agreed."""
        if self.log is None:
            return None
        if len(self.log.stopped) != self._stopped_seen:
            self._stop_shadows()
        if work.shadows & self.log.stopped:
            work.shadows -= self.log.stopped
        sw = self.log.next_after(work.version)
        sh = self.log.next_shadow(work.version, work.shadows)
        if sh is not None and (sw is None or sh.at_ms < sw.at_ms):
            return sh
        return sw

    def _stop_shadows(self) -> None:
        """Shadows were stopped (`pql shadow stop`): no live model runs them any more."""
        assert self.log is not None
        self._stopped_seen = len(self.log.stopped)
        gone = [self._shadow_scorers[v] for v in self.log.stopped if v in self._shadow_scorers]
        for live in self._scorers.values():
            live.shadows = [s for s in live.shadows if s not in gone]

    def restored_shadows(self, stored: bytes | None, version: int) -> set[int]:
        """The shadows a partition running `version` had started (`SHADOWS_KEY`'s value) and
        still runs: their scorers are made, since its states hold their decisions."""
        self.accept_tags()  # the partition's states are decoded next
        if stored is None or self.log is None:
            return set()
        running = {v for v in decode_shadows(stored) if v > version and v not in self.log.stopped}
        for v in running:
            self.shadow_scorer(v)
        return running

    def drop_stopped(self, state: AccountState) -> None:
        """Forget the decisions of stopped shadows in `state` (before a switch: a stopped
        shadow's last decision is not to be promoted)."""
        if state.shadows and self.log is not None and self.log.stopped:
            for v in [v for v in state.shadows if v in self.log.stopped]:
                del state.shadows[v]

    def next_switch(self, version: int) -> ModelSwitch | None:
        """The next switch after `version`, once its time is agreed."""
        return self.log.next_after(version) if self.log is not None else None

    def limit(self, work: PartitionWork) -> int:
        """How far this partition's stream time may go now: up to its next agreed switch or
        shadow start, or to where it froze for an announced one (NO_TIME_END: no limit)."""
        sw = self.due(work)
        if sw is not None:
            return sw.at_ms
        if self.log is not None and self.log.pending is not None:
            self._report(work)
            if work.frozen is not None:
                return work.frozen
        return NO_TIME_END

    @staticmethod
    def can_switch(work: PartitionWork, at: int) -> bool:
        """Whether every event before `at` this partition can know of is applied: stream time
        reached `at`, or the partition's sources have all said they have nothing (an idle app:
        nothing held, no stream time yet)."""
        until = work.clock.releasable()
        if until is not None:
            return until >= at
        return work.clock.heard_all and not len(work.align)

    def _report(self, work: PartitionWork) -> None:
        """Freeze the partition where it is, and say so (once per announced switch)."""
        pending = self.log.pending if self.log is not None else None
        if pending is None or work.reported == pending.change_id:
            return
        logged = pending.reports.get(work.part)
        if logged is not None:
            # Reported already, by this partition's previous owner: freeze where it did (this
            # owner has applied nothing yet; what it re-reads may run past that report).
            work.frozen = logged
            work.reported = pending.change_id
            return
        history_from = None
        if pending.backfill:
            if not self.backfill_ready(pending.model.version):
                return  # not frozen while the backfill catches up: it reports after
            assert self.backfill is not None
            history_from = self.backfill.history_from
        bound = applied_bound(work.clock)
        if bound is None:
            if not work.clock.heard_all or len(work.align):
                return  # stream time not known yet: report once it is
            # Nothing read since the partition was assigned: what its kept state applied.
            bound = work.max_clock + 1 if work.max_clock is not None else None
        work.frozen = bound if bound is not None else NO_TIME_END
        work.reported = pending.change_id
        if self.send_report is not None:
            self.send_report(pending.change_id, {work.part: bound}, history_from)
        log.info(
            "partition %d: stream time frozen at %s for %s",
            work.part,
            bound,
            pending.what,
        )

    def shadow_started(
        self, work: PartitionWork, sh: ShadowStart, started: float, accounts: int
    ) -> None:
        work.shadows.add(sh.model.version)
        work.frozen = None
        seconds = time.monotonic() - started
        if self.on_shadow_started is not None:
            self.on_shadow_started(sh.model.version, accounts, seconds)
        log.info(
            "partition %d: shadow %s v%d runs from stream time %d (%d accounts started in %.1f s)",
            work.part,
            sh.model.name,
            sh.model.version,
            sh.at_ms,
            accounts,
            seconds,
        )

    def switched(self, work: PartitionWork, sw: ModelSwitch, started: float, accounts: int) -> None:
        work.version = sw.model.version
        work.shadows = {v for v in work.shadows if v > work.version}  # promoted, or ended
        work.frozen = None
        if self.on_switched is not None:
            self.on_switched(accounts, time.monotonic() - started)
        log.info(
            "partition %d: switched to %s v%d at stream time %d (%d accounts decided again "
            "in %.1f s)",
            work.part,
            sw.model.name,
            sw.model.version,
            sw.at_ms,
            accounts,
            time.monotonic() - started,
        )
