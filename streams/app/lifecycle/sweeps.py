"""The account stage's model changes (`streams.app.accounts`): a switch or a shadow start made
in one partition goes over every account it owns (`streams.app.lifecycle.versions` says when;
the core, `streams.scoring.switch` and `streams.scoring.shadow`, what it does to an account)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from streams.app.ingest.config import partition_of
from streams.app.lifecycle.versions import (
    MODEL_KEY,
    SHADOWS_KEY,
    Versions,
    encode_shadows,
    encode_version,
    is_control_key,
)
from streams.app.partition import PartitionWork
from streams.app.table_writer import StateTable
from streams.scoring.backfill import carry, switch_backfilled
from streams.scoring.shadow import ShadowStart, start_shadow
from streams.scoring.switch import ModelSwitch, switch_account
from streams.state.account import AccountState

log = logging.getLogger(__name__)


class ModelSweeps:
    """Mixed into `AccountStage`, whose state and output these use."""

    versions: Versions
    table: StateTable
    cache: dict[str, AccountState]
    work: dict[int, PartitionWork]
    partitions: int
    flush_max_events: int
    _generation: int
    flush: Callable[..., Coroutine[Any, Any, None]]  # `WriteBehind.flush`

    def _emit(self, transitions: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _emit_shadow(self, transitions: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _state(self, part: int, account: str) -> AccountState | None:
        raise NotImplementedError

    def tend_backfill(self) -> None:
        """Start, feed or stop the backfill a switch to other signals needs
        (`streams.app.lifecycle.backfill`)."""
        self.versions.tend(self.work, lambda: set(self.table.active_partitions()))

    def partial_signals(self) -> set[str]:
        """The live model's backfilled signals not filled yet at each partition's stream
        time (`streams.scoring.backfill`)."""
        out: set[str] = set()
        for work in self.work.values():
            scorer = self.versions.scorer(work.version)
            if scorer.partial and work.clock.value is not None:
                out.update(scorer.partial_at(work.clock.value))
        return out

    def _catch_up(self, work: PartitionWork, account: str, state: AccountState) -> AccountState:
        """A state still decided by an older version than its partition runs (restored after
        a crash in the middle of a switch): make the switches it missed; the state now."""
        versions = self.versions
        while state.version < work.version and (sw := versions.next_switch(state.version)):
            old, new = versions.scorer(state.version), versions.scorer(sw.model.version)
            versions.drop_stopped(state)
            if versions.log is not None and sw.model.version in versions.log.backfills:
                # Its backfill is over: the new signals start empty for this account.
                log.warning(
                    "account %s missed the switch to v%d over backfilled signals: they start "
                    "from its next event",
                    account,
                    sw.model.version,
                )
                c = carry(old.model, new.model)
                state, found = switch_backfilled(old, new, c, account, state, None, sw.at_ms)
                self.cache[account] = state
                self._emit(found)
            else:
                self._emit(switch_account(old, new, account, state, sw.at_ms))
            if old.shadow_out:
                self._emit_shadow(old.take_shadow())
            work.dirty.add(account)
        work.timers.schedule(account, state.next_expiry)
        return state

    async def _switch(self, work: PartitionWork, sw: ModelSwitch) -> None:
        """Switch every account of the partition at `sw.at_ms` (stream time reached it, every
        event before it is applied)."""
        started = time.monotonic()
        versions = self.versions
        old, new = versions.scorer(work.version), versions.scorer(sw.model.version)
        version = sw.model.version
        backfilled: dict[str, AccountState] | None = None
        if versions.log is not None and version in versions.log.backfills:
            assert versions.backfill is not None  # `backfill_ready` before this
            backfilled = await versions.backfill.handover(work.part, sw.at_ms)
            c = carry(old.model, new.model)

        def switch(account: str, state: AccountState) -> AccountState | None:
            if state.version >= version:
                return None
            if state.version != work.version:
                state = self._catch_up(work, account, state)
            versions.drop_stopped(state)
            if backfilled is None:
                self._emit(switch_account(old, new, account, state, sw.at_ms))
            else:
                state, found = switch_backfilled(
                    old, new, c, account, state, backfilled.pop(account, None), sw.at_ms
                )
                self.cache[account] = state
                self._emit(found)
            if old.shadow_out:
                self._emit_shadow(old.take_shadow())
            return state

        done = await self._sweep(work, switch)
        if done is None:
            return  # revoked meanwhile: the new owner switches it
        for account, fresh in (backfilled or {}).items():
            # Only the backfill knows it (its events all went to the old model's late path).
            state, found = switch_backfilled(old, new, c, account, None, fresh, sw.at_ms)
            self.cache[account] = state
            self._emit(found)
            work.dirty.add(account)
            work.timers.schedule(account, state.next_expiry)
        self.table.put(work.part, MODEL_KEY, encode_version(version))
        versions.switched(work, sw, started, done)
        self.table.put(work.part, SHADOWS_KEY, encode_shadows(work.shadows))

    async def _start_shadow(self, work: PartitionWork, sh: ShadowStart) -> None:
        """Start shadow `sh` on every account of the partition at `sh.at_ms`
        (`streams.scoring.shadow`)."""
        started = time.monotonic()
        versions = self.versions
        live, shadow = versions.scorer(work.version), versions.shadow_scorer(sh.model.version)
        version = sh.model.version

        def start(account: str, state: AccountState) -> AccountState | None:
            if version in state.shadows:
                return None
            if state.version != work.version:
                state = self._catch_up(work, account, state)
            transitions, started_here = start_shadow(live, shadow, account, state, sh.at_ms)
            self._emit(transitions)
            if live.shadow_out:
                self._emit_shadow(live.take_shadow())
            self._emit_shadow(started_here)
            return state

        done = await self._sweep(work, start)
        if done is None:
            return
        versions.shadow_started(work, sh, started, done)
        self.table.put(work.part, SHADOWS_KEY, encode_shadows(work.shadows))

    async def _sweep(
        self, work: PartitionWork, change: Callable[[str, AccountState], AccountState | None]
    ) -> int | None:
        """`change` every account the partition owns (it returns the account's state, None if
        it left it as it was); how many it changed, or None if the partition was revoked
        meanwhile. Yields to the event loop every few hundred accounts and flushes every
        `flush_max_events` of them (a million accounts take a while)."""
        generation = self._generation
        part = work.part
        n = self.partitions
        accounts = [a for a in self.cache if partition_of(a, n) == part]
        cached = set(accounts)
        accounts += [a for a, _ in self.table.partition_items(part) if a not in cached]
        done = 0
        for i, account in enumerate(accounts):
            if is_control_key(account):
                continue
            if i % 256 == 0:
                await asyncio.sleep(0)
                if self._generation != generation:
                    return None
            state = self._state(part, account)
            if state is None or (state := change(account, state)) is None:
                continue
            work.dirty.add(account)
            work.timers.schedule(account, state.next_expiry)
            done += 1
            if len(work.dirty) >= self.flush_max_events:
                await self.flush(wait=False)
        return done
