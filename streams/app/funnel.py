"""The funnel, live (`--signup-event`, `--conversion-event`, `--revenue-property`): Prometheus
counters and histograms with the backtest's definitions (`streams.backtest.funnel`), so a
dashboard shows PQL rate, time to PQL, conversion of PQLs against non-PQLs, lift and revenue as
they happen.

Per account, its state keeps when it entered the funnel (its first sign-up event, or its first
event), when it first qualified (the scorer sets it) and when it first converted, so each is
counted once per account. A crash re-applies the events since the last commit: an account's
entry or conversion in that stretch is counted again (the counters are at-least-once, like the
transitions).
"""

from __future__ import annotations

import math

from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, EventType
from streams.metrics import Metrics
from streams.state.account import AccountState


class LiveFunnel:
    def __init__(
        self,
        metrics: Metrics,
        signup_event: str | None,
        conversion_event: str | None,
        revenue_property: str | None,
    ) -> None:
        self.m = metrics
        self.signup = signup_event
        self.conversion = conversion_event
        self.revenue = revenue_property

    def on_event(self, ev: Event, state: AccountState, new: bool) -> None:
        """`ev` was applied to `state` (`new`: the account's first event)."""
        track = ev.type is EventType.TRACK
        if not state.entered and (
            (self.signup is None and new) or (track and ev.event == self.signup)
        ):
            state.entered = ev.ts
            self.m.funnel_entered_total.inc()
        if track and ev.event == self.conversion and not state.converted:
            state.converted = ev.ts
            pql = bool(state.first_pql) and state.first_pql <= ev.ts
            label = "true" if pql else "false"
            self.m.funnel_conversions_total.labels(label).inc()
            if pql:
                self.m.funnel_lead_time_seconds.observe((ev.ts - state.first_pql) / 1000)
            value = ev.properties.get(self.revenue) if self.revenue else None
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                self.m.funnel_revenue_total.labels(label).inc(max(0.0, float(value)))

    def on_qualified(self, state: AccountState, occurred_at: str) -> None:
        """A `qualified` transition of the account: its first, if the state says so."""
        at = iso_to_epoch_ms(occurred_at)
        if at is None or state.first_pql != at:
            return  # qualified before: counted then
        self.m.funnel_first_pqls_total.inc()
        entry = state.entered or state.first_seen
        if entry and at >= entry:
            self.m.funnel_time_to_pql_seconds.observe((at - entry) / 1000)
