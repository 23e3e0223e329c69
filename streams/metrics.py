"""Prometheus metrics of the PQL worker.

Why we own these instead of using Faust's sensors: Faust has no consumer-lag gauge and its
Prometheus sensor reported latencies in the wrong unit until recently. SRE dashboards and the
alert rules in ``deploy/monitoring/`` are written against the names below, so the names are a
contract: change one and ``tests/unit/monitoring`` fails until the dashboard and alerts follow.

Every ``Metrics`` owns a private ``CollectorRegistry`` rather than the process-global one, so
tests (and a worker restarted in-process) can create as many as they like without
"Duplicated timeseries" errors.

Attribute naming rule: the attribute is the metric name without the ``pql_`` prefix
(``pql_events_consumed_total`` -> ``metrics.events_consumed_total``); the one exception is the
Info metric, whose attribute ``model_info`` is also the exposed sample name without prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "PQL_KINDS_SEGMENT", "LagLike", "Metrics"]

#: Content-Type of ``Metrics.render()``. ``generate_latest`` writes the classic 0.0.4 text
#: format; prometheus-client's ``CONTENT_TYPE_LATEST`` now announces ``version=1.0.0``, which
#: older Prometheus servers (Debian's 2.42) do not know, so we announce what we actually write.
CONTENT_TYPE: str = CONTENT_TYPE_PLAIN_0_0_4

#: Latency buckets in seconds. The targets are sub-second (processing) with a tail that can
#: reach minutes when the worker is behind (end-to-end includes producer and broker delay),
#: so the buckets are dense below 1 s and sparse up to 10 min; beyond that `+Inf` is enough
#: because lag alerts fire long before.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

# Funnel durations (event time): an hour to a quarter.
FUNNEL_BUCKETS = tuple(h * 3600.0 for h in (1, 6, 24, 3 * 24, 7 * 24, 14 * 24, 30 * 24, 90 * 24))

#: ``segment`` label value of transitions that are not about a segment (PQL enter/exit):
#: Prometheus treats an empty label as absent, which keeps ``sum by (kind)`` simple.
PQL_KINDS_SEGMENT = ""


class LagLike(Protocol):
    """What ``Metrics.set_consumer_lag`` needs of a lag row (``streams.io.lag.LagRow`` fits);
    a Protocol so this module does not import the Kafka client."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def lag(self) -> int: ...


class Metrics:
    """All collectors of one worker, registered in their own registry.

    Besides the collectors, it keeps the event time of the last processed event per partition
    so that ``pql_consumer_lag_seconds`` keeps growing while nothing arrives: a stuck or idle
    partition must show rising lag, not a frozen last value (call ``refresh_lag_seconds``
    periodically, e.g. from a timer, and before each scrape).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._last_event_time: dict[tuple[str, int], float] = {}
        self._last_commit = 0.0

        # -- lag -----------------------------------------------------------------------------
        self.consumer_lag_messages = Gauge(
            "pql_consumer_lag_messages",
            "Log-end offset minus the consumer group's committed offset, per input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "pql_consumer_lag_seconds",
            "Wall time minus the event time of the last processed event of the partition; "
            "keeps growing while no events are processed.",
            ["topic", "partition"],
            registry=r,
        )

        # -- throughput ----------------------------------------------------------------------
        self.events_consumed_total = Counter(
            "pql_events_consumed_total",
            "Events read from the input topics.",
            ["topic"],
            registry=r,
        )
        self.events_processed_total = Counter(
            "pql_events_processed_total",
            "Events fully applied to the account state.",
            registry=r,
        )
        self.events_rejected_total = Counter(
            "pql_events_rejected_total",
            "Events not applied, by reason (schema, too_late, unknown_account, ...).",
            ["reason"],
            registry=r,
        )
        self.dlq_produced_total = Counter(
            "pql_dlq_produced_total",
            "Records written to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.late_events_total = Counter(
            "pql_late_events_total",
            "Out-of-order events behind the watermark, by outcome (applied|rejected).",
            ["outcome"],
            registry=r,
        )

        self.duplicate_events_total = Counter(
            "pql_duplicate_events_total",
            "Events skipped because their account had already applied their messageId "
            "(re-deliveries within the de-duplication horizon).",
            registry=r,
        )
        self.clock_skew_events_total = Counter(
            "pql_clock_skew_events_total",
            "Events whose timestamp came from a wrong device clock, by outcome "
            "(corrected|clamped; rejected ones count as future_timestamp rejects).",
            ["outcome"],
            registry=r,
        )
        self.held_events = Gauge(
            "pql_held_events",
            "Events held until stream time passes them (event-time alignment), by stage.",
            ["stage"],
            registry=r,
        )
        self.paused_partitions = Gauge(
            "pql_paused_input_partitions",
            "Input partitions paused for running more than --max-drift ahead of the slowest.",
            registry=r,
        )

        # -- results -------------------------------------------------------------------------
        self.transitions_total = Counter(
            "pql_transitions_total",
            "Transitions emitted, by kind and segment (segment is empty for PQL kinds).",
            ["kind", "segment"],
            registry=r,
        )
        self._transition_children: dict[tuple[str, str], Any] = {}
        self.pql_accounts = Gauge(
            "pql_pql_accounts",
            "Accounts currently qualified as PQL (in this worker's partitions).",
            registry=r,
        )
        self.segment_accounts = Gauge(
            "pql_segment_accounts",
            "Accounts currently in each segment (in this worker's partitions).",
            ["segment"],
            registry=r,
        )

        # -- the funnel (streams.app.funnel) -------------------------------------------------
        self.funnel_entered_total = Counter(
            "pql_funnel_entered",
            "Accounts that entered the funnel (their first --signup-event, else first event).",
            registry=r,
        )
        self.funnel_first_pqls_total = Counter(
            "pql_funnel_first_pqls",
            "Accounts that qualified for the first time.",
            registry=r,
        )
        self.funnel_conversions_total = Counter(
            "pql_funnel_conversions",
            "Accounts that converted (their first --conversion-event), by whether they had "
            "qualified by then (pql).",
            ["pql"],
            registry=r,
        )
        self.funnel_revenue_total = Counter(
            "pql_funnel_revenue",
            "The conversion events' --revenue-property, by whether the account had qualified.",
            ["pql"],
            registry=r,
        )
        self.funnel_time_to_pql_seconds = Histogram(
            "pql_funnel_time_to_pql_seconds",
            "From entering the funnel to the first qualification (event time).",
            buckets=FUNNEL_BUCKETS,
            registry=r,
        )
        self.funnel_lead_time_seconds = Histogram(
            "pql_funnel_lead_time_seconds",
            "From the first qualification to converting (event time).",
            buckets=FUNNEL_BUCKETS,
            registry=r,
        )

        # -- latency -------------------------------------------------------------------------
        self.processing_latency_seconds = Histogram(
            "pql_processing_latency_seconds",
            "Time from consuming an event to producing the transition it caused.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency_seconds = Histogram(
            "pql_end_to_end_latency_seconds",
            "Time from the event's own timestamp to producing the transition it caused.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # -- state and worker ----------------------------------------------------------------
        self.state_accounts = Gauge(
            "pql_state_accounts",
            "Accounts held in the local state store.",
            registry=r,
        )
        self.state_bytes = Gauge(
            "pql_state_bytes",
            "Approximate size of the local state store on disk.",
            registry=r,
        )
        self.rebalances_total = Counter(
            "pql_rebalances_total",
            "Consumer group rebalances this worker went through.",
            registry=r,
        )
        self.recovery_in_progress = Gauge(
            "pql_recovery_in_progress",
            "1 while table state is being restored from changelogs, else 0.",
            registry=r,
        )
        self.state_restored_records_total = Counter(
            "pql_state_restored_records",
            "Changelog records restored into the local state store (wiped or new partitions).",
            ["table"],
            registry=r,
        )
        self.worker_ready = Gauge(
            "pql_worker_ready",
            "1 once recovery is complete and partitions are assigned, else 0.",
            registry=r,
        )
        self.broker_reachable = Gauge(
            "pql_broker_reachable",
            "1 while the Kafka broker answers this worker's metadata requests, else 0.",
            registry=r,
        )
        self.last_commit_timestamp_seconds = Gauge(
            "pql_last_commit_timestamp_seconds",
            "Unix time of the last successful offset commit.",
            registry=r,
        )
        self.watermark_timestamp_seconds = Gauge(
            "pql_watermark_timestamp_seconds",
            "Event-time watermark (Unix seconds) of this worker.",
            registry=r,
        )
        self.model_effective_from = Gauge(
            "pql_model_effective_from_seconds",
            "Stream time (Unix seconds) from which the live model version decides.",
            registry=r,
        )
        self.model_switch_pending = Gauge(
            "pql_model_switch_pending",
            "1 while an announced model switch waits for every partition's report (stream "
            "time is frozen meanwhile).",
            registry=r,
        )
        self.model_switch_accounts_total = Counter(
            "pql_model_switch_accounts",
            "Accounts decided again by a model switch (each switch, every partition).",
            registry=r,
        )
        self.model_switch_seconds = Histogram(
            "pql_model_switch_seconds",
            "Time one partition took to switch every account it owns to a new model version.",
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.model_reloads_total = Counter(
            "pql_model_reloads_total",
            "Model files read again (changed, or SIGHUP), by result: announced, invalid, "
            "refused (not newer, renamed, or reading new user traits), unreadable.",
            ["result"],
            registry=r,
        )
        self.shadow_running = Gauge(
            "pql_shadow_running",
            "1 for each shadow model version running beside the live model.",
            ["version"],
            registry=r,
        )
        self.shadow_transitions_total = Counter(
            "pql_shadow_transitions_total",
            "Transitions of the shadow models (to the shadow topic), by model version, kind "
            "and segment (empty for PQL kinds).",
            ["version", "kind", "segment"],
            registry=r,
        )
        self.shadow_start_accounts_total = Counter(
            "pql_shadow_start_accounts",
            "Accounts a shadow model started deciding at its start (each start, every partition).",
            ["version"],
            registry=r,
        )
        self.backfill_records_total = Counter(
            "pql_backfill_records",
            "Input records a backfill read to build a new model's signals (a model with other "
            "signals than the live one; README: changing your model).",
            ["version"],
            registry=r,
        )
        self.backfill_caught_up = Gauge(
            "pql_backfill_caught_up",
            "Per backfill running in this worker (by model version): 0 while it reads the input "
            "topic's retained records, 1 once it has caught up (its switch can then be agreed).",
            ["version"],
            registry=r,
        )
        self.partial_signals = Gauge(
            "pql_partial_signals",
            "1 for each signal of the live model that was backfilled from a history shorter "
            "than its window (the input topic's retention) and has not filled yet at the "
            "current stream time; the transitions list them in partial_signals.",
            ["signal"],
            registry=r,
        )
        # Info appends `_info` itself: exposed as pql_model_info{name,version,fingerprint} 1.
        self.model_info = Info(
            "pql_model",
            "Scoring model in use.",
            registry=r,
        )

    # -- helpers the worker calls --------------------------------------------------------------

    def count_transition(self, kind: str, segment: str) -> None:
        """``pql_transitions_total`` + 1. The labelled child is kept: `labels()` costs a few
        µs, and this runs for every transition."""
        child = self._transition_children.get((kind, segment))
        if child is None:
            child = self._transition_children[(kind, segment)] = self.transitions_total.labels(
                kind, segment
            )
        child.inc()

    def set_model(self, name: str, version: str, fingerprint: str) -> None:
        """Publish the model identity; dashboards join on it to annotate model changes."""
        self.model_info.info({"name": name, "version": version, "fingerprint": fingerprint})

    def set_shadows(self, versions: set[str]) -> None:
        """``pql_shadow_running``: 1 per running shadow version; ended ones are removed."""
        for labels in list(self.shadow_running._metrics):
            if labels[0] not in versions:
                self.shadow_running.remove(*labels)
        for version in versions:
            self.shadow_running.labels(version).set(1)

    def set_partial_signals(self, names: Iterable[str]) -> None:
        """``pql_partial_signals``: 1 per partial signal; filled ones are removed."""
        keep = set(names)
        for labels in list(self.partial_signals._metrics):
            if labels[0] not in keep:
                self.partial_signals.remove(*labels)
        for name in keep:
            self.partial_signals.labels(name).set(1)

    def set_backfill(self, version: str | None, caught_up: bool) -> None:
        """``pql_backfill_caught_up`` for the running backfill (None: none runs)."""
        for labels in list(self.backfill_caught_up._metrics):
            if labels[0] != version:
                self.backfill_caught_up.remove(*labels)
        if version is not None:
            self.backfill_caught_up.labels(version).set(1 if caught_up else 0)

    def set_consumer_lag(self, rows: Iterable[LagLike]) -> None:
        """Set ``pql_consumer_lag_messages`` from lag rows (e.g. ``consumer_group_lag``).

        Partitions absent from ``rows`` are removed so that a partition moved to another
        worker by a rebalance stops being reported here (two workers would otherwise both
        report it and a ``sum`` would double the lag)."""
        seen: set[tuple[str, str]] = set()
        for row in rows:
            key = (row.topic, str(row.partition))
            seen.add(key)
            self.consumer_lag_messages.labels(*key).set(max(row.lag, 0))
        for labels in _label_sets(self.consumer_lag_messages):
            if labels not in seen:
                self.consumer_lag_messages.remove(*labels)

    def record_event_time(self, topic: str, partition: int, event_time: float) -> None:
        """Remember the event time (Unix seconds) of the last processed event of a partition.

        Only moves forward: lag in seconds is about the newest event applied, so an
        out-of-order (late) event must not make the partition look further behind than it is."""
        key = (topic, partition)
        if event_time > self._last_event_time.get(key, float("-inf")):
            self._last_event_time[key] = event_time

    def mark_committed(self, at: float) -> None:
        """An offset commit at Unix time `at` (by the account stage or the ingest process):
        the gauge keeps the latest."""
        if at > self._last_commit:
            self._last_commit = at
            self.last_commit_timestamp_seconds.set(at)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition from the lag-seconds bookkeeping and exposition."""
        self._last_event_time.pop((topic, partition), None)
        labels = (topic, str(partition))
        if labels in _label_sets(self.consumer_lag_seconds):
            self.consumer_lag_seconds.remove(*labels)

    def refresh_lag_seconds(self, now: float | None = None) -> None:
        """Recompute ``pql_consumer_lag_seconds`` = now - last event time, per partition.

        Called periodically rather than per event so the value grows while no events flow;
        negative values (producer clocks ahead of ours) are clamped to 0."""
        wall = time.time() if now is None else now
        for (topic, partition), event_time in self._last_event_time.items():
            self.consumer_lag_seconds.labels(topic, str(partition)).set(max(wall - event_time, 0.0))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (see ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def sample_names(self) -> frozenset[str]:
        """Every series name this registry can expose, whether or not a labelled child exists
        yet (``_total``, ``_bucket``, ``_sum``, ``_count``, ``_created``, ``_info``).

        Used by the monitoring tests to catch typos in dashboard and alert expressions."""
        return sample_names(self.registry)


def _label_sets(metric: Gauge) -> set[tuple[str, ...]]:
    """(topic, partition) label values of a per-partition gauge's existing children, read from
    its collected samples (prometheus-client has no public accessor for the children)."""
    out: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            out.add(tuple(sample.labels[name] for name in ("topic", "partition")))
    return out


def sample_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every series name `registry` can expose (see `Metrics.sample_names`)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)
