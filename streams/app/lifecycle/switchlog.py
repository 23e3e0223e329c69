"""The model history of an app, as every worker reads it from the control topic `<app>-models`.

One switch, the same in every partition, whichever pod noticed the new model first (README
"Changing your model"):

1. A worker that sees a new model file (SIGHUP, or the file changed: a ConfigMap swaps a symlink)
   checks it and writes an announcement (`model` record) to the control topic. The first
   announcement of a definition wins; a pod that sees the same file later finds it there.
2. Every account stage that reads an announcement freezes the stream time of each partition it
   owns where it is (no event at or after it is applied, no window expires past it) and writes
   a `report` of it. Stream time is frozen only for the round trip.
3. Once a report of every by-account partition is in the log, the switch time T is the latest
   of them (and after the previous switch): every worker computes the same T from the same log.
   No partition has gone past T, so each applies events before T under the old model, switches
   at T (`streams.scoring.switch`) and goes on.

Shadow models (`pql worker --shadow FILE`, `streams.scoring.shadow`) are announced the same way
(`role: shadow`) and start at a time agreed the same way: S, the latest report. A shadow runs
until a switch makes a version at or after its own live (its promotion, or a later model), or
until a `stop` record (`pql shadow stop`): each partition stops it when it reads the record
(nothing acts on a shadow, so where its topic ends is not agreed), and a stopped version is
never run or promoted from its decisions again.

A switch to a model with other signals (`streams.scoring.backfill`) is announced the same way;
each worker first builds the new signals from the input topic
(`streams.app.lifecycle.backfill`), and its partitions report only once that has caught up, each
report saying where the history it read began (`history_from`, the latest one counts). The rest
is the same; at T each partition takes the backfilled states over. A shadow reads the live
model's state: one whose signals are no longer the live model's ends at such a switch.

A worker that restarts reads the log from the start: the switches made, and one under way
(reporting for its partitions when it gets them). Records are read in log order by everyone and
judged by the same rules, so every worker agrees on what was refused too. This module is the
pure part: records in, history out; `streams.app.lifecycle.control` does the Kafka side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from streams.model.errors import ModelError
from streams.model.loader import parse_model
from streams.model.spec import Model, state_fingerprint
from streams.scoring.backfill import check_backfill, needs_backfill
from streams.scoring.shadow import ShadowStart, check_shadow
from streams.scoring.switch import IncompatibleModel, ModelSwitch

log = logging.getLogger(__name__)

NO_REPORT = -(2**62)  # a partition that had applied nothing yet when it reported


LIVE = "live"
SHADOW = "shadow"


@dataclass
class Pending:
    model: Model
    reports: dict[int, int] = field(default_factory=dict)  # by-account partition -> bound
    role: str = LIVE  # a switch, or a shadow start
    backfill: bool = False  # a switch to other signals: they are built first
    history_from: int | None = None  # the latest start of the history a backfill read

    @property
    def what(self) -> str:
        """The change, for the log: "the switch to v4", "the shadow v5"."""
        v = self.model.version
        return f"the switch to v{v}" if self.role == LIVE else f"the shadow v{v}"

    @property
    def change_id(self) -> str:
        """What reports name: the model's id, prefixed for a shadow start (a shadow and its
        promotion are the same definition, but two changes)."""
        fp = self.model.fingerprint
        return fp if self.role == LIVE else f"{SHADOW}:{fp}"


def announcement(
    model: Model, text: str, by: str, at_ms: int | None = None, role: str = LIVE
) -> dict[str, Any]:
    """The control record announcing `model` (its text travels along: any worker can run any
    version of the history). `at_ms`: only for the app's first model (from the start).
    `role`: a switch to it, or a shadow of it."""
    return {
        "type": "model",
        "id": model.fingerprint,
        "name": model.name,
        "version": model.version,
        "text": text,
        "by": by,
        "at": at_ms,
        "role": role,
    }


def stop(version: int, change_id: str, by: str) -> dict[str, Any]:
    """The control record stopping the running shadow of `version`."""
    return {"type": "stop", "id": change_id, "version": version, "by": by}


def report(
    change_id: str, bounds: dict[int, int | None], by: str, history_from: int | None = None
) -> dict[str, Any]:
    """An account stage's frozen stream time per partition it owns, for the change
    `change_id` (`Pending.change_id`); for a backfill, where the history it read began (None:
    the whole history)."""
    out: dict[str, Any] = {
        "type": "report",
        "id": change_id,
        "partitions": {str(p): w for p, w in bounds.items()},
        "by": by,
    }
    if history_from is not None:
        out["history_from"] = history_from
    return out


class SwitchLog:
    """Records in log order -> the switches made (`live`), the shadows started (`shadows`)
    and the change under way (`pending`)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.live: list[ModelSwitch] = []
        # The switches made over a backfill: version -> where the history read began (None:
        # the whole history).
        self.backfills: dict[int, int | None] = {}
        self.shadows: list[ShadowStart] = []
        self.stopped: set[int] = set()  # versions of the shadows stopped
        self.pending: Pending | None = None
        self.refused: dict[str, str] = {}  # model id -> why
        # Announced while another switch was under way: to be announced again after it.
        self.deferred: set[str] = set()

    @property
    def current(self) -> ModelSwitch | None:
        return self.live[-1] if self.live else None

    @property
    def last_change_at(self) -> int:
        """The stream time of the latest switch or shadow start."""
        times = [sw.at_ms for sw in self.live[-1:]] + [sh.at_ms for sh in self.shadows[-1:]]
        return max(times) if times else 0

    def running_shadows(self) -> list[ShadowStart]:
        """The shadows started and not ended (ended: a version at or after theirs is live)."""
        cur = self.current
        live = cur.model.version if cur is not None else 0
        signals = state_fingerprint(cur.model) if cur is not None else ""
        return [
            sh
            for sh in self.shadows
            if sh.model.version > live
            and sh.model.version not in self.stopped
            and state_fingerprint(sh.model) == signals
        ]

    def known(self, model: Model, role: str = LIVE) -> bool:
        """Whether there is nothing to announce for `model` in `role`: live now (a switch), run
        as a shadow now or before (a shadow), under way, or refused."""
        fp = model.fingerprint
        cur = self.current
        if role == LIVE:
            done = cur is not None and cur.model.fingerprint == fp
        else:
            done = any(sh.model.fingerprint == fp for sh in self.shadows)
        return (
            done
            or (self.pending is not None and self.pending.model.fingerprint == fp)
            or fp in self.refused
        )

    def refusal(self, model: Model, role: str = LIVE) -> str | None:
        """Why `model` cannot follow the live one, or shadow it (None: it can). Versions only
        grow, and the new model must take over the kept state
        (`streams.scoring.switch.check_switch`); one shadow per version."""
        cur = self.current
        if cur is None:
            return "the app has no model yet to switch from"
        try:
            if role == SHADOW:
                if any(sh.model.version == model.version for sh in self.running_shadows()):
                    return f"a shadow of version {model.version} is running already"
                if model.version in self.stopped:
                    return (
                        f"a shadow of version {model.version} was stopped: give the candidate "
                        "a new version"
                    )
                check_shadow(cur.model, model)
                return None
            if model.version <= cur.model.version:
                return (
                    f"its version ({model.version}) is not after the live one's "
                    f"({cur.model.version}): versions only grow"
                )
            check_backfill(cur.model, model)
        except IncompatibleModel as exc:
            return str(exc)
        return None

    def next_shadow(self, live_version: int, started: set[int]) -> ShadowStart | None:
        """The first shadow start not made yet by a partition running `live_version` that has
        started the shadows of versions `started` (one of a version not after the live one
        has ended before it started there: skipped)."""
        # The live model's signals, hashed only once a shadow is a candidate (this runs for
        # every by-account record).
        signals: str | None = None
        hashed = False
        for sh in self.shadows:
            v = sh.model.version
            if v > live_version and v not in started and v not in self.stopped:
                if not hashed:
                    hashed = True
                    live = next(
                        (s.model for s in self.live if s.model.version == live_version), None
                    )
                    signals = state_fingerprint(live) if live is not None else None
                if signals is not None and state_fingerprint(sh.model) != signals:
                    continue  # ended by a switch to other signals
                return sh
        return None

    def next_after(self, version: int) -> ModelSwitch | None:
        """The first switch made to a version after `version`."""
        for sw in self.live:
            if sw.model.version > version:
                return sw
        return None

    def apply(self, record: dict[str, Any]) -> str | None:
        """Take one record; return a line worth logging (a switch made or refused), if any."""
        kind = record.get("type")
        if kind == "model":
            return self._announced(record)
        if kind == "report":
            return self._reported(record)
        if kind == "stop":
            return self._stopped(record)
        return None

    def _stopped(self, record: dict[str, Any]) -> str | None:
        for sh in self.running_shadows():
            if f"{SHADOW}:{sh.model.fingerprint}" == record.get("id"):
                self.stopped.add(sh.model.version)
                return f"shadow {sh.model.name} v{sh.model.version} stopped by {record.get('by')}"
        return None

    def _announced(self, record: dict[str, Any]) -> str | None:
        model_id = str(record.get("id", ""))
        try:
            model = parse_model(str(record.get("text", "")), source=f"model {model_id[:12]}")
        except ModelError as exc:
            return self._refuse(model_id, f"not a valid model: {exc}")
        if model.fingerprint != model_id:
            return self._refuse(model_id, "its text does not match its id")
        role = SHADOW if record.get("role") == SHADOW else LIVE
        if self.known(model, role):
            return None  # announced again by another pod, or already refused
        cur = self.current
        if cur is None:
            if record.get("at") is None:
                return self._refuse(model_id, "the app has no model yet to switch from")
            self.live.append(ModelSwitch(int(record["at"]), model))
            return f"model {model.name} v{model.version} applies from the start"
        if self.pending is not None:  # not remembered as refused: announced again later
            self.deferred.add(model_id)
            return (
                f"model {model_id[:12]} not taken now: {self.pending.what} is under way (it is "
                "announced again once that "
                "one is made)"
            )
        why = self.refusal(model, role)
        if why is not None:
            return self._refuse(model_id, why)
        self.deferred.discard(model_id)
        backfill = role == LIVE and needs_backfill(cur.model, model)
        self.pending = Pending(model, role=role, backfill=backfill)
        if backfill:
            return (
                f"switch to {model.name} v{model.version} announced by {record.get('by')}: its "
                "signals differ, so each worker builds them from the input topic first, then "
                "the partitions report"
            )
        what = "shadow" if role == SHADOW else "switch to"
        return (
            f"{what} {model.name} v{model.version} announced by {record.get('by')}: "
            "freezing stream time for the partitions' reports"
        )

    def _reported(self, record: dict[str, Any]) -> str | None:
        pending = self.pending
        if pending is None or record.get("id") != pending.change_id:
            return None
        for part, bound in dict(record.get("partitions") or {}).items():
            p = int(part)
            if 0 <= p < self.partitions and p not in pending.reports:
                pending.reports[p] = NO_REPORT if bound is None else int(bound)
        history = record.get("history_from")
        if pending.backfill and history is not None:
            pending.history_from = max(int(history), pending.history_from or int(history))
        if len(pending.reports) < self.partitions:
            return None
        assert self.current is not None  # a change is pending only over a live model
        at = max(max(pending.reports.values()), self.last_change_at + 1)
        self.pending = None
        m = pending.model
        if pending.role == SHADOW:
            self.shadows.append(ShadowStart(at, m))
            return f"shadow {m.name} v{m.version} runs from stream time {at}"
        self.live.append(ModelSwitch(at, m))
        if pending.backfill:
            self.backfills[m.version] = pending.history_from
            return (
                f"switch to {m.name} v{m.version} at stream time {at}, over backfilled signals "
                + (
                    "(the whole history)"
                    if pending.history_from is None
                    else f"(history from {pending.history_from}: partial until it fills)"
                )
            )
        return f"switch to {m.name} v{m.version} at stream time {at}"

    def _refuse(self, model_id: str, why: str) -> str:
        self.refused[model_id] = why
        return f"model {model_id[:12]} refused: {why}"
