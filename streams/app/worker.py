"""The Faust app: three agents over explicit topics, two RocksDB tables, ticks, web endpoints.

    input topic ──ingest──┬──────────────────────────────► <app>-by-account ──accounts──► output
    (any keying)          │ events naming no account,        (keyed by account,  │        topic
        │ bad input       │ group calls, identifies          murmur2)            │
        ▼                 └──► <app>-by-user ──users──────────────┘              ▼
     DLQ topic                 (keyed by user; table: membership,          table: account
                                user traits)                                state (one value
                                                                            per account)

Routing rules are `streams.events.routing` (shared with `pql backtest`); scoring is
`streams.scoring` via `streams.app.accounts.AccountStage`. Every agent runs with concurrency 1
(faust #606) and acks a record only after what it produced is delivered (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from functools import partial
from typing import Any

import faust
from faust.types import TP

from streams.app.accounts import EVENT_PREFIX, TICK_PREFIX, AccountStage
from streams.app.settings import Settings
from streams.app.watermark import Watermark
from streams.events.codec import decode_event, encode_event
from streams.events.parse import parse_event
from streams.events.resolver import UserRecord
from streams.events.routing import needs_user_stage, user_stage
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, Reject
from streams.io.lag import consumer_group_lag
from streams.metrics import Metrics
from streams.scoring.engine import Scorer

log = logging.getLogger("streams.worker")


def faust_settings(settings: Settings, embedded: bool) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker": f"kafka://{settings.broker}",
        "store": "rocksdb://",
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_in_thread": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "table_standby_replicas": settings.standby_replicas,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "broker_commit_interval": 1.0,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": "at_least_once",
        # Records are acked only after a flush (write-behind); the rest is simply re-read by the
        # next owner. Waiting for them to be acked on stop/rebalance would wait forever.
        "stream_wait_empty": False,
        "autodiscover": False,
        "loghandlers": [],
    }
    if settings.instance_id:
        conf["consumer_group_instance_id"] = settings.instance_id
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    if embedded:
        # Tansu bug 2 (shared notes): its "latest offset" is wrong for multi-record batches,
        # which makes changelog recovery restore wrong state. One record per batch is correct.
        conf["producer_max_batch_size"] = 1
    return conf


def _credentials(settings: Settings) -> Any:
    sec = settings.security
    protocol = sec.get("security.protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = (
        ssl.create_default_context(cafile=sec.get("ssl.ca.location")) if "SSL" in protocol else None
    )
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=sec.get("sasl.username"),
            password=sec.get("sasl.password"),
            mechanism=sec.get("sasl.mechanism", "PLAIN"),
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


class Pipeline:
    """Builds the app and holds what its agents share."""

    def __init__(self, settings: Settings, metrics: Metrics, embedded: bool) -> None:
        self.settings = settings
        self.metrics = metrics
        self.scorer = Scorer(settings.model)
        self.trait_keys = self.scorer.plan.user_traits
        self.watermark = Watermark(settings.watermark_grace_ms)
        self.app = faust.App(settings.resolved_app_id, **faust_settings(settings, embedded))
        app = self.app
        n = settings.partitions
        self.input = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)
        self.output = app.topic(settings.output_topic, key_type=bytes, value_type=bytes)
        self.dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
        self.by_user = app.topic(settings.by_user_topic, partitions=n, value_type=bytes)
        self.by_account = app.topic(settings.by_account_topic, partitions=n, value_type=bytes)
        self.users = app.Table("users", partitions=n, value_type=bytes)
        self.accounts = app.Table("accounts", partitions=n, value_type=bytes)
        self.stage = AccountStage(
            self.scorer,
            self.accounts,
            send_transition=self._send_transition,
            send_dlq=self._send_late_dlq,
            flush_producer=self._flush_producer,
            partitions=n,
            flush_interval_s=settings.flush_interval_s,
            flush_max_events=settings.flush_max_events,
            on_transition=self._count_transition,
            on_late=self._count_late,
            advance_idle_s=settings.advance_idle_s,
        )
        self._forward_pending: list[Any] = []
        self.ready = False
        self._wire()

    # -- agents ------------------------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app
        app.agent(self.input, name="ingest")(self._ingest)
        app.agent(self.by_user, name="users")(self._users)
        app.agent(self.by_account, name="accounts")(self._accounts)
        app.timer(self.settings.tick_interval_s)(self._tick)
        app.timer(self.settings.flush_interval_s)(self._ack_forwarded)
        app.timer(self.settings.lag_interval_s)(self._refresh_lag)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_rebalance_complete.connect(self._on_rebalanced)
        from streams.app.web import register_pages

        register_pages(self)

    async def _ingest(self, stream: Any) -> None:
        consumed = self.metrics.events_consumed_total.labels(self.settings.input_topic)
        async for record in stream.noack().events():
            consumed.inc()
            raw: bytes = record.value if record.value is not None else b""
            parsed = parse_event(raw)
            msg = record.message
            if isinstance(parsed, Reject):
                await self._send_dlq(raw, record.key, parsed, "ingest")
            else:
                self._observe(msg, parsed.ts)
                await self._route(parsed)
            self._forward_pending.append(record)
            if len(self._forward_pending) >= self.settings.flush_max_events:
                await self._ack_forwarded()

    async def _route(self, ev: Event) -> None:
        if ev.account_id:
            await self._to_account(ev.account_id, ev)
        if ev.user_id and needs_user_stage(ev, self.trait_keys):
            await self.by_user.send(key=ev.user_id.encode(), value=encode_event(ev), force=True)

    async def _to_account(self, account: str, ev: Event) -> None:
        await self.by_account.send(
            key=account.encode(), value=EVENT_PREFIX + encode_event(ev), force=True
        )

    async def _users(self, stream: Any) -> None:
        async for record in stream.noack().events():
            ev = decode_event(record.value)
            user_id = ev.user_id or ""
            data = self.users.get(user_id)
            before = UserRecord.from_bytes(data) if data else None
            deliveries, reject, after = user_stage(ev, before, self.trait_keys)
            if after is not None:
                self.users[user_id] = after.to_bytes()
            if reject is not None:
                await self._send_dlq(_json(ev), None, reject, "users")
            for account, delivered in deliveries:
                await self._to_account(account, delivered)
            self._forward_pending.append(record)

    async def _accounts(self, stream: Any) -> None:
        async for record in stream.noack().events():
            msg = record.message
            value: bytes = record.value
            if value[:1] == EVENT_PREFIX:
                self.metrics.events_processed_total.inc()
            # Stream time only moves while this partition is caught up: records of its own
            # still unread could be older than what the input side has seen.
            wm = None if self._behind(msg) else self.watermark.current()
            await self.stage.on_record(record, wm)
            wm = self.watermark.current()
            if wm is not None:
                self.metrics.watermark_timestamp_seconds.set(wm / 1000)

    async def _tick(self) -> None:
        """Give every assigned by-account partition a record to flush and advance time in."""
        self.watermark.refresh(self._highwater)
        for tp in self.app.assignor.assigned_actives():
            if tp.topic == self.settings.by_account_topic:
                await self.by_account.send(value=TICK_PREFIX, partition=tp.partition, force=True)
        m = self.metrics
        m.refresh_lag_seconds()
        m.state_accounts.set(len(self.stage.cache))
        m.state_bytes.set(self.stage.state_bytes)
        m.pql_accounts.set(self.stage.pql_accounts)
        for segment in self.settings.model.segments:
            m.segment_accounts.labels(segment.name).set(self.stage.segment_accounts[segment.name])

    async def _refresh_lag(self) -> None:
        """Lag from the broker's committed offsets: the numbers `pql lag` and an external
        exporter see. Blocking admin calls run in a thread; failures are logged, not fatal."""
        # The input topic only: internal topics carry time ticks, whose last few records are
        # always in flight, and their lag follows from the input's anyway.
        topics = [self.settings.input_topic]
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(
                None,
                partial(
                    consumer_group_lag, self.settings.broker, self.settings.resolved_app_id, topics
                ),
            )
        except Exception as exc:  # noqa: BLE001 - observability must never stop the worker
            log.warning("could not read consumer lag: %s", exc)
            return
        mine = {(tp.topic, tp.partition) for tp in self.app.assignor.assigned_actives()}
        self.metrics.set_consumer_lag([r for r in rows if (r.topic, r.partition) in mine])

    async def _ack_forwarded(self) -> None:
        """Ack ingest/user-stage records once what they forwarded is delivered."""
        if not self._forward_pending:
            return
        batch, self._forward_pending = self._forward_pending, []
        await self._flush_producer()
        for record in batch:
            record.ack()

    # -- helpers -----------------------------------------------------------------------------
    def _behind(self, msg: Any) -> bool:
        hw = self._highwater(msg.topic, msg.partition)
        return hw is not None and msg.offset + 1 < hw

    def _highwater(self, topic: str, partition: int) -> int | None:
        hw: int | None = self.app.consumer.highwater(TP(topic, partition))
        return hw

    def _observe(self, msg: Any, event_ms: int) -> None:
        hw = self._highwater(msg.topic, msg.partition)
        self.watermark.observe(msg.topic, msg.partition, event_ms, msg.offset, hw)
        self.metrics.record_event_time(msg.topic, msg.partition, event_ms / 1000)

    async def _send_transition(self, account: str, payload: bytes) -> None:
        await self.output.send(key=account.encode(), value=payload, force=True)

    async def _flush_producer(self) -> None:
        await self.app.producer.flush()
        self.metrics.last_commit_timestamp_seconds.set(time.time())

    async def _send_dlq(self, raw: bytes, key: Any, reject: Reject, stage: str) -> None:
        headers = {
            "pql-reason": reject.reason.value.encode(),
            "pql-detail": reject.detail.encode(),
            "pql-field": (reject.field or "").encode(),
            "pql-stage": stage.encode(),
        }
        await self.dlq.send(key=key, value=raw, headers=headers, force=True)
        self.metrics.events_rejected_total.labels(reject.reason.value).inc()
        self.metrics.dlq_produced_total.labels(reject.reason.value).inc()

    async def _send_late_dlq(self, raw: bytes, reject: Reject, ev: Event) -> None:
        await self._send_dlq(raw, (ev.account_id or "").encode() or None, reject, "accounts")

    def _count_transition(self, t: dict[str, Any], consumed_at: float) -> None:
        m = self.metrics
        m.transitions_total.labels(t["kind"], t["segment"] or "").inc()
        if t["message_id"] is None:
            return  # time-triggered: no event to measure latency from
        now = time.time()
        if consumed_at:
            # The by-account record's timestamp is when ingest forwarded the input record.
            m.processing_latency_seconds.observe(max(now - consumed_at, 0.0))
        occurred = iso_to_epoch_ms(t["occurred_at"])
        if occurred is not None:
            m.end_to_end_latency_seconds.observe(max(now - occurred / 1000, 0.0))

    def _count_late(self, applied: bool) -> None:
        self.metrics.late_events_total.labels("applied" if applied else "rejected").inc()

    async def _on_revoked(self, app: Any, revoked: set[TP], **_: Any) -> None:
        self.ready = False
        self.metrics.rebalances_total.inc()
        parts = {tp.partition for tp in revoked if tp.topic == self.settings.by_account_topic}
        self.stage.forget(parts)
        for tp in revoked:
            self.watermark.forget(tp.topic, tp.partition)
            self.metrics.forget_partition(tp.topic, tp.partition)

    async def _on_rebalanced(self, app: Any, **_: Any) -> None:
        self.ready = True


def _json(ev: Event) -> bytes:
    from streams.app.accounts import _event_json

    return _event_json(ev)
