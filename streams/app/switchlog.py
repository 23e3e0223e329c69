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

A worker that restarts reads the log from the start: the switches made, and one under way
(reporting for its partitions when it gets them). Records are read in log order by everyone and
judged by the same rules, so every worker agrees on what was refused too. This module is the
pure part: records in, history out; `streams.app.models` does the Kafka side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from streams.model.errors import ModelError
from streams.model.loader import parse_model
from streams.model.spec import Model
from streams.scoring.switch import IncompatibleModel, ModelSwitch, check_switch

log = logging.getLogger(__name__)

NO_REPORT = -(2**62)  # a partition that had applied nothing yet when it reported


@dataclass
class Pending:
    model: Model
    reports: dict[int, int] = field(default_factory=dict)  # by-account partition -> bound


def announcement(model: Model, text: str, by: str, at_ms: int | None = None) -> dict[str, Any]:
    """The control record announcing `model` (its text travels along: any worker can run any
    version of the history). `at_ms`: only for the app's first model (from the start)."""
    return {
        "type": "model",
        "id": model.fingerprint,
        "name": model.name,
        "version": model.version,
        "text": text,
        "by": by,
        "at": at_ms,
    }


def report(model_id: str, bounds: dict[int, int | None], by: str) -> dict[str, Any]:
    """An account stage's frozen stream time per partition it owns, for switch `model_id`."""
    return {
        "type": "report",
        "id": model_id,
        "partitions": {str(p): w for p, w in bounds.items()},
        "by": by,
    }


class SwitchLog:
    """Records in log order -> the switches made (`live`) and the one under way (`pending`)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.live: list[ModelSwitch] = []
        self.pending: Pending | None = None
        self.refused: dict[str, str] = {}  # model id -> why
        # Announced while another switch was under way: to be announced again after it.
        self.deferred: set[str] = set()

    @property
    def current(self) -> ModelSwitch | None:
        return self.live[-1] if self.live else None

    def known(self, model: Model) -> bool:
        """Whether `model` is live now, under way, or was refused (nothing to announce)."""
        fp = model.fingerprint
        cur = self.current
        return (
            (cur is not None and cur.model.fingerprint == fp)
            or (self.pending is not None and self.pending.model.fingerprint == fp)
            or fp in self.refused
        )

    def refusal(self, model: Model) -> str | None:
        """Why `model` cannot follow the live one (None: it can). Versions only grow, and the
        new model must take over the kept state (`streams.scoring.switch.check_switch`)."""
        cur = self.current
        if cur is None:
            return "the app has no model yet to switch from"
        if model.version <= cur.model.version:
            return (
                f"its version ({model.version}) is not after the live one's "
                f"({cur.model.version}): versions only grow"
            )
        try:
            check_switch(cur.model, model)
        except IncompatibleModel as exc:
            return str(exc)
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
        return None

    def _announced(self, record: dict[str, Any]) -> str | None:
        model_id = str(record.get("id", ""))
        try:
            model = parse_model(str(record.get("text", "")), source=f"model {model_id[:12]}")
        except ModelError as exc:
            return self._refuse(model_id, f"not a valid model: {exc}")
        if model.fingerprint != model_id:
            return self._refuse(model_id, "its text does not match its id")
        if self.known(model):
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
                f"model {model_id[:12]} not taken now: the switch to "
                f"v{self.pending.model.version} is under way (it is announced again once that "
                "one is made)"
            )
        why = self.refusal(model)
        if why is not None:
            return self._refuse(model_id, why)
        self.deferred.discard(model_id)
        self.pending = Pending(model)
        return (
            f"switch to {model.name} v{model.version} announced by {record.get('by')}: "
            "freezing stream time for the partitions' reports"
        )

    def _reported(self, record: dict[str, Any]) -> str | None:
        pending = self.pending
        if pending is None or record.get("id") != pending.model.fingerprint:
            return None
        for part, bound in dict(record.get("partitions") or {}).items():
            p = int(part)
            if 0 <= p < self.partitions and p not in pending.reports:
                pending.reports[p] = NO_REPORT if bound is None else int(bound)
        if len(pending.reports) < self.partitions:
            return None
        cur = self.current
        assert cur is not None  # a switch is pending only over a live model
        at = max(max(pending.reports.values()), cur.at_ms + 1)
        self.live.append(ModelSwitch(at, pending.model))
        self.pending = None
        return f"switch to {pending.model.name} v{pending.model.version} at stream time {at}"

    def _refuse(self, model_id: str, why: str) -> str:
        self.refused[model_id] = why
        return f"model {model_id[:12]} refused: {why}"
