"""The worker: a confluent-kafka ingest stage in a child process, then two Faust agents over
frames.

    input topic ─ingest (process)──┬─────────────────────────► <app>-by-account ──accounts──► out
    (any keying)   parse, route,   │ events naming no account,    (frames keyed by    │       topic
        │ bad      a frame per     │ group calls, identifies      account partition)  │
        ▼ input    partition       └──► <app>-by-user ──users──────────┘              ▼
     DLQ topic                          (table: membership,               table: account state
                                         user traits)                     (one value/account)

Routing rules are `streams.events.routing` (shared with `pql backtest`); scoring is
`streams.scoring` via `streams.app.accounts.AccountStage`. Records on the internal topics are
frames (`streams.app.wire`: events, then stream time), so Faust's per-record cost is paid per
frame, not per event; the stages write them through librdkafka (`streams.app.sink`). Every
agent runs with concurrency 1 (faust #606) and acks a record only after what it produced is
delivered (at-least-once); the account stage drops events it already applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any, cast

import faust
from faust.types import TP

from streams.app.accounts import AccountStage
from streams.app.api import LookupApi, register_api
from streams.app.broker_watch import BrokerWatch
from streams.app.dlq import dlq_headers
from streams.app.faust_config import faust_settings
from streams.app.faust_transport import install as install_transport
from streams.app.funnel import LiveFunnel
from streams.app.health import (
    FAIL_EXIT_S,
    Readiness,
    StallGuard,
    WorkerStalled,
    exit_if_stuck_stopping,
    log_task_stacks,
    readiness,
)
from streams.app.ingest import IngestConfig
from streams.app.ingest.process import IngestProcess
from streams.app.lifecycle.backfill import Backfill, BackfillSource
from streams.app.lifecycle.control import ModelControl
from streams.app.lifecycle.versions import Versions
from streams.app.restore import Restorer, RestoringTable
from streams.app.settings import Settings
from streams.app.sink import Sink
from streams.app.table_writer import TableWriter
from streams.app.users import RELAY_DELAY_S, UserStage
from streams.app.watermark import DIRECT
from streams.app.web import register_pages
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, Reject
from streams.io.lag import consumer_group_lag
from streams.metrics import Metrics
from streams.model.spec import Model
from streams.scoring.engine import Scorer

# How often the worker applies the ingest process's report (stream time, its metrics).
INGEST_REPORT_INTERVAL_S = 0.05
GAUGE_INTERVAL_S = 0.5

log = logging.getLogger("streams.worker")


class Pipeline:
    """Builds the app and holds what its agents share."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        embedded: bool,
        control: ModelControl | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.control = control
        # The first model of the app's history (the file's, without a control log): every
        # version after it reads the same state (`streams.app.lifecycle.versions`).
        first = control.log.live[0] if control is not None else None
        self.scorer = (
            Scorer(first.model, effective_from_ms=first.at_ms)
            if first is not None
            else Scorer(settings.model)
        )
        self.trait_keys = self.scorer.plan.user_traits
        self.app = faust.App(settings.state_app_id, **faust_settings(settings))
        app = self.app
        install_transport(app, settings.fetch_wait)
        n = settings.partitions
        self.by_user = app.topic(settings.by_user_topic, partitions=n, value_type=bytes)
        self.by_account = app.topic(settings.by_account_topic, partitions=n, value_type=bytes)
        self.users = app.Table(
            "users", partitions=n, value_type=bytes, options=settings.rocksdb_options()
        )
        self.accounts = app.Table(
            "accounts", partitions=n, value_type=bytes, options=settings.rocksdb_options()
        )
        restorer = Restorer(
            settings.broker, settings.security or None, self._count_restored, seal=embedded
        )
        # app.Table builds a RestoringTable (faust_settings' "Table"); faust types it TableT.
        users, accounts = cast(RestoringTable, self.users), cast(RestoringTable, self.accounts)
        users.restorer = accounts.restorer = restorer
        # Transitions, DLQ records and both tables' changelogs go through librdkafka.
        self.sink = Sink(settings.broker, settings.security or None)
        self.users_writer = TableWriter(self.users, self.sink, seal=embedded)
        self.stage = AccountStage(
            self.scorer,
            # The account stage writes state only after its transitions are delivered.
            TableWriter(self.accounts, self.sink, seal=embedded),
            send_transition=self._send_transition,
            send_dlq=self._send_late_dlq,
            flush_producer=self._flush_sink,
            partitions=n,
            flush_interval_s=settings.flush_interval_s,
            flush_max_events=settings.flush_max_events,
            on_transition=self._count_transition,
            on_late=self._count_late,
            advance_idle_s=settings.advance_idle_s,
            grace_ms=settings.watermark_grace_ms,
            # Stream time waits for the ingest's marks and every by-user partition's relays.
            mark_paths=(DIRECT, *range(n)),
            idle_hold_s=settings.idle_hold_s,
            on_duplicate=self._count_duplicate,
            versions=Versions(
                self.scorer,
                control.log if control is not None else None,
                send_report=control.send_report if control is not None else None,
                on_switched=self._count_switched,
                on_shadow_started=self._count_shadow_started,
                make_backfill=self._make_backfill,
            ),
            send_shadow=self._send_shadow,
            on_shadow_transition=self._count_shadow_transition,
            funnel=LiveFunnel(
                metrics,
                settings.signup_event,
                settings.conversion_event,
                settings.revenue_property,
            ),
        )
        self._forward_pending: list[Any] = []
        self._relay_timer: asyncio.TimerHandle | None = None
        self.user_stage = UserStage(
            self.trait_keys,
            self.users_writer,
            send=self._forward,
            send_dlq=self._send_user_dlq,
            partitions=n,
            grace_ms=settings.watermark_grace_ms,
            idle_hold_s=settings.idle_hold_s,
        )
        self.embedded = embedded
        self.ready = False
        self.stall_guard = StallGuard(settings.stall_timeout_s)
        self.broker_watch = BrokerWatch(
            settings.broker, settings.security or None, metrics.broker_reachable.set
        )
        self.ingest = IngestProcess(
            IngestConfig.from_settings(settings, self.trait_keys),
            metrics,
            settings.log_level,
        )
        self._wire()

    # -- agents ------------------------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app
        app.agent(self.by_user, name="users")(self._users)
        app.agent(self.by_account, name="accounts")(self._accounts)
        app.timer(GAUGE_INTERVAL_S)(self._refresh_gauges)
        app.timer(self.settings.flush_interval_s)(self._ack_forwarded)
        app.timer(self.settings.lag_interval_s)(self._refresh_lag)
        # mode's handler type wants `*args`; these take exactly what the signals send.
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_rebalanced)  # type: ignore[arg-type]
        app.timer(INGEST_REPORT_INTERVAL_S)(self._pump_ingest)
        app.timer(1.0)(self._check_health)
        if self.control is not None:
            app.timer(0.1)(self._drain_models)
            poll = self.settings.model_poll_s
            app.timer(poll or 1.0)(self._check_model_file)
        register_pages(app, self.metrics, self.readiness)
        register_api(app, LookupApi.of(app, self.stage, self.settings))

    def readiness(self) -> Readiness:
        return readiness(self.app, self.ready, self.broker_watch.reachable)

    async def _users(self, stream: Any) -> None:
        """The user stage (`streams.app.users.UserStage`) over the by-user records."""
        async for record in stream.noack().events():
            self._forward_pending.extend(await self.user_stage.on_record(record))
            if self.user_stage.pending and self._relay_timer is None:
                loop = asyncio.get_running_loop()
                self._relay_timer = loop.call_later(RELAY_DELAY_S, self._send_relays)

    def _send_relays(self) -> None:
        self._relay_timer = None
        self.user_stage.send_pending()

    async def _accounts(self, stream: Any) -> None:
        async for record in stream.noack().events():
            before = self.stage.events_applied
            await self.stage.on_record(record)
            self.metrics.events_processed_total.inc(self.stage.events_applied - before)

    async def _refresh_gauges(self) -> None:
        m = self.metrics
        m.refresh_lag_seconds()
        wm = self.stage.stream_time()
        if wm is not None:
            m.watermark_timestamp_seconds.set(wm / 1000)
        m.held_events.labels("accounts").set(self.stage.held_events())
        m.held_events.labels("users").set(self.user_stage.held_events())
        m.state_accounts.set(len(self.stage.state_sizes))
        m.state_bytes.set(self.stage.state_bytes)
        m.pql_accounts.set(self.stage.members.pql_accounts)
        for segment in self.settings.model.segments:
            m.segment_accounts.labels(segment.name).set(
                self.stage.members.segment_accounts[segment.name]
            )
        bf = self.stage.versions.backfill
        m.set_backfill(str(bf.version) if bf else None, bf is not None and bf.ready())
        m.set_partial_signals(self.stage.partial_signals())

    async def _refresh_lag(self) -> None:
        """Lag from the broker's committed offsets: the numbers `pql lag` and an external
        exporter see. Blocking admin calls run in a thread; failures are logged, not fatal."""
        # The input topic only: internal topics carry stream-time marks, whose last few records are
        # always in flight, and their lag follows from the input's anyway.
        topics = [self.settings.input_topic]
        if not self.broker_watch.reachable:
            # The broker is away (said once by the watch): no clients made to time out against
            # it every few seconds; the gauge keeps its last figures until it answers again.
            return
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(
                None,
                partial(
                    consumer_group_lag,
                    self.settings.broker,
                    self.settings.resolved_app_id,
                    topics,
                    security=self.settings.security or None,
                ),
            )
        except Exception as exc:  # noqa: BLE001 - observability must never stop the worker
            log.warning("could not read consumer lag: %s", exc)
            return
        mine = self.ingest.assigned  # the input partitions this worker's ingest reads
        self.metrics.set_consumer_lag([r for r in rows if r.partition in mine])

    async def _pump_ingest(self) -> None:
        """The ingest process's latest report: stream time and its metrics."""
        self.ingest.pump()

    async def _check_health(self) -> None:
        """The ingest process and the sink are part of the worker: if either failed, so does
        the worker (its supervisor restarts it; nothing was committed past what was
        delivered). So does a worker stuck unready (`streams.app.health`). Failing, it stops
        as Faust stops; if that does not end within `FAIL_EXIT_S`, the process exits anyway."""
        try:
            self.ingest.check()
            self.sink.check()
            try:
                self.stall_guard.check(self.readiness(), time.monotonic())
            except WorkerStalled:
                log_task_stacks()
                raise
        except Exception:
            exit_if_stuck_stopping(FAIL_EXIT_S)
            raise

    async def _drain_models(self) -> None:
        """What the control topic's reader read: announcements, reports, switches agreed."""
        assert self.control is not None
        self.control.drain()
        self.stage.tend_backfill()

    def _make_backfill(self, model: Model, owned: set[int]) -> Backfill:
        s = self.settings
        records = self.metrics.backfill_records_total.labels(str(model.version))
        return Backfill(
            model,
            BackfillSource(s.broker, s.input_topic, s.security or None, s.backfill_seed),
            s.partitions,
            owned,
            on_records=records.inc,
        )

    async def _check_model_file(self) -> None:
        """The model file, if it changed (not polled with --model-poll 0), or on SIGHUP."""
        assert self.control is not None
        if self.settings.model_poll_s or self.control.reload_requested.is_set():
            self.control.check_file()

    async def _ack_forwarded(self) -> None:
        """Ack ingest/user-stage records once what they forwarded is delivered."""
        if not self._forward_pending:
            return
        batch, self._forward_pending = self._forward_pending, []
        self.user_stage.send_pending()  # what those records routed is produced
        # Exactly those records' user writes (staged with them, no await in between); the
        # state goes out only after their forwards are delivered.
        taken = self.users_writer.take()
        await self._flush_producer()
        await self.users_writer.commit(taken=taken)
        for record in batch:
            record.ack()

    # -- helpers -----------------------------------------------------------------------------
    def _send_transition(self, account: str, payload: bytes) -> None:
        self.sink.produce(self.settings.output_topic, payload, account.encode())

    def _send_shadow(self, account: str, payload: bytes) -> None:
        self.sink.produce(self.settings.shadow_topic, payload, account.encode())

    def _count_shadow_transition(self, t: dict[str, Any]) -> None:
        self.metrics.shadow_transitions_total.labels(
            str(t["model"]["version"]), t["kind"], t["segment"] or ""
        ).inc()

    def _count_shadow_started(self, version: int, accounts: int, seconds: float) -> None:
        self.metrics.shadow_start_accounts_total.labels(str(version)).inc(accounts)

    async def _flush_sink(self) -> None:
        await self.sink.flush()
        self.metrics.mark_committed(time.time())

    async def _flush_producer(self) -> None:
        """Both producers: Faust's (records between the stages) and the sink."""
        await self.app.producer.flush()
        await self._flush_sink()

    async def _send_dlq(self, raw: bytes, key: Any, reject: Reject, stage: str) -> None:
        headers = dict(dlq_headers(reject, stage))
        self.sink.produce(self.settings.dlq_topic, raw, key, headers=headers)
        self.metrics.events_rejected_total.labels(reject.reason.value).inc()
        self.metrics.dlq_produced_total.labels(reject.reason.value).inc()

    def _forward(self, partition: int, value: bytes) -> None:
        """A record of the user stage into a by-account partition: through the sink
        (librdkafka, one request in flight: in order with the stage's other records of that
        partition; Faust's send path cost ~0.75 ms of event-loop time per record), delivered
        before the by-user records are acked (`_ack_forwarded`)."""
        self.sink.produce(self.settings.by_account_topic, value, partition=partition)

    async def _send_user_dlq(self, raw: bytes, key: bytes | None, reject: Reject) -> None:
        await self._send_dlq(raw, key, reject, "users")

    async def _send_late_dlq(self, raw: bytes, reject: Reject, ev: Event) -> None:
        await self._send_dlq(raw, (ev.account_id or "").encode() or None, reject, "accounts")

    def _count_transition(self, t: dict[str, Any], consumed_at: float) -> None:
        m = self.metrics
        m.count_transition(t["kind"], t["segment"] or "")
        if t["message_id"] is None:
            return  # time-triggered: no event to measure latency from
        now = time.time()
        if consumed_at:
            # The by-account record's timestamp is when ingest forwarded the input record.
            m.processing_latency_seconds.observe(max(now - consumed_at, 0.0))
        occurred = iso_to_epoch_ms(t["occurred_at"])
        if occurred is not None:
            m.end_to_end_latency_seconds.observe(max(now - occurred / 1000, 0.0))

    def _count_restored(self, table: str, records: int) -> None:
        self.metrics.state_restored_records_total.labels(table).inc(records)

    def _count_switched(self, accounts: int, seconds: float) -> None:
        self.metrics.model_switch_accounts_total.inc(accounts)
        self.metrics.model_switch_seconds.observe(seconds)

    def _count_duplicate(self) -> None:
        self.metrics.duplicate_events_total.inc()

    def _count_late(self, applied: bool) -> None:
        self.metrics.late_events_total.labels("applied" if applied else "rejected").inc()

    async def _on_revoked(self, app: Any, revoked: set[TP], **_: Any) -> None:
        self.ready = False
        self.metrics.rebalances_total.inc()
        parts = {tp.partition for tp in revoked if tp.topic == self.settings.by_account_topic}
        self.stage.forget(parts)
        # Uncommitted user-table writes of revoked partitions: their records are re-read by
        # the new owner; their stores are no longer ours to write. So are their held events.
        user_parts = {tp.partition for tp in revoked if tp.topic == self.settings.by_user_topic}
        self.users_writer.forget(user_parts)
        self.user_stage.forget(user_parts)
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)

    async def _on_rebalanced(self, app: Any, **_: Any) -> None:
        self.ready = True
