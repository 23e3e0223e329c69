"""The `pql notify` service: one consumer per destination, each in its own thread and its own
consumer group (`<group>.<destination>`), so a destination that is down delays only itself.

Per record, in partition order:

1. not a JSON transition -> the dead-letter topic (`invalid`);
2. not routed to this destination, or its transition_id already delivered -> skipped;
3. sent (`streams.notify.messages`), retried on a timeout, a connection error, 408/425/429/5xx
   with exponential backoff and full jitter, a 429's or 503's Retry-After honoured
   (`streams.notify.retry`); after the last attempt, or on another 4xx, the record goes to the
   dead-letter topic with the reason;
4. only then is its offset stored; offsets are committed from what is stored (every few seconds,
   on a rebalance, at shutdown). So a crash re-sends at most what was in flight, never skips.

De-duplication: the transitions topic is at-least-once (a worker that restarts re-emits with the
same transition_id, on the same partition: it is keyed by account). Each destination remembers
the last `dedupe_depth` ids per partition; when it is assigned a partition it first reads back
the `dedupe_depth` records before its committed offset (all delivered or dead-lettered), so a
restarted or rebalanced notify remembers too. Webhook receivers get `Idempotency-Key` for the
rest (a request that timed out after the receiver processed it).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson

from streams.events.timestamps import iso_to_epoch_ms
from streams.io.kafka_config import consumer_config, producer_config
from streams.notify.dedupe import Seen, decode_transition, read_back
from streams.notify.messages import slack_message, webhook_headers
from streams.notify.metrics import NotifyMetrics
from streams.notify.retry import RetryPolicy, should_retry
from streams.notify.routes import Destination, Routing

log = logging.getLogger("pql.notify")

USER_AGENT = "pql-notify"
_OFFSET_INVALID = -1001  # librdkafka's "no committed offset"
LAG_EVERY_S = 5.0


@dataclass(frozen=True)
class NotifySettings:
    bootstrap: str
    security: dict[str, str] | None = None
    topic: str = "pql-transitions"
    group: str = "pql-notify"
    dlq_topic: str = "pql-transitions-notify-dlq"
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    dedupe_depth: int = 10_000
    from_beginning: bool = False
    session_timeout_ms: int = 10_000


@dataclass
class Attempt:
    status: int | None  # None: no response
    error: str | None = None  # what went wrong, for the log and the dead letter
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def cause(self) -> str:
        if self.status is None:
            return "timeout" if self.error and "timeout" in self.error.lower() else "connection"
        return "status_5xx" if self.status >= 500 else f"status_{self.status}"


def _epoch(iso: Any) -> float | None:
    """Epoch seconds of a transition's ISO instant (None: not one), as the core parses it."""
    ms = iso_to_epoch_ms(iso) if isinstance(iso, str) else None
    return None if ms is None else ms / 1000


class DestinationWorker(threading.Thread):
    """Delivers the topic to one destination (see module)."""

    def __init__(
        self,
        dest: Destination,
        routing: Routing,
        settings: NotifySettings,
        metrics: NotifyMetrics,
        dead_letter: Callable[[bytes | None, dict[str, Any]], None],
        stop: threading.Event,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name=f"notify-{dest.name}", daemon=True)
        self.dest = dest
        self.routing = routing
        self.settings = settings
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.stop = stop
        self.clock = clock
        self.rng = rng or random.Random()
        self.seen: dict[int, Seen] = {}
        self.error: BaseException | None = None
        self.assigned = threading.Event()  # set once the first assignment was read back
        self._client = httpx.Client(
            timeout=dest.timeout_s, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )
        self._consumer: Any = None
        self._last_lag = 0.0

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the service, which stops
            self.error = exc
            log.exception("destination %s stopped", self.dest.name)
            self.stop.set()
        finally:
            self._client.close()

    def _run(self) -> None:
        from confluent_kafka import Consumer

        s = self.settings
        conf = consumer_config(
            s.bootstrap,
            f"{s.group}.{self.dest.name}",
            s.security,
            session_timeout_ms=s.session_timeout_ms,
            auto_offset_reset="earliest" if s.from_beginning else "latest",
            enable_auto_commit=True,
        )
        # Commit only offsets stored after a delivery (or dead letter): at-least-once.
        conf["enable.auto.offset.store"] = False
        conf["auto.commit.interval.ms"] = 2000
        # One record can take every retry's wait plus every request's timeout.
        worst = s.policy.total_s() + s.policy.attempts * self.dest.timeout_s
        conf["max.poll.interval.ms"] = int(max(300.0, worst + 60.0) * 1000)
        consumer = self._consumer = Consumer(conf)
        consumer.subscribe([s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.5)
                if msg is not None:
                    if msg.error():
                        log.warning("%s: consumer error: %s", self.dest.name, msg.error())
                    elif self._handle(msg):
                        consumer.store_offsets(msg)
                self._refresh_lag()
        finally:
            consumer.close()  # commits what is stored

    def _handle(self, msg: Any) -> bool:
        """Deliver or dead-letter one record: True when it is done with (its offset may be
        stored); False when stopping interrupted it."""
        name = self.dest.name
        value = msg.value()
        t = decode_transition(value)
        if t is None:
            self._dead(msg, None, "invalid", 0, None, "not a JSON transition with a transition_id")
            return True
        tid = t["transition_id"]
        seen = self.seen.setdefault(msg.partition(), Seen(self.settings.dedupe_depth))
        if tid in seen:
            self.metrics.skipped.labels(name, "duplicate").inc()
            return True
        if name not in self.routing.targets(t):
            self.metrics.skipped.labels(name, "not_routed").inc()
            seen.add(tid)
            return True
        outcome = self._deliver(t, value)
        if outcome is None:
            return False
        attempts, last = outcome
        if last.ok:
            now = self.clock()
            self.metrics.delivered.labels(name).inc()
            if (at := _epoch(t.get("occurred_at"))) is not None:
                self.metrics.sla_seconds.labels(name).observe(max(0.0, now - at))
            if (at := _epoch(t.get("detected_at"))) is not None:
                self.metrics.pipeline_seconds.labels(name).observe(max(0.0, now - at))
        else:
            reason = "attempts" if should_retry(last.status) else "rejected"
            self._dead(msg, t, reason, attempts, last.status, last.error)
        seen.add(tid)
        return True

    def _deliver(self, t: dict[str, Any], raw: bytes) -> tuple[int, Attempt] | None:
        """(attempts made, the last one), or None when stopping interrupted the retries."""
        policy = self.settings.policy
        attempt = 1
        while True:
            last = self._send(t, raw)
            self.metrics.up.labels(self.dest.name).set(1 if last.ok else 0)
            if last.ok or not should_retry(last.status) or attempt >= policy.attempts:
                return attempt, last
            self.metrics.retries.labels(self.dest.name, last.cause).inc()
            wait = policy.wait(attempt, last.retry_after, self.clock(), self.rng)
            log.info(
                "%s: %s for %s (attempt %d), next in %.1f s",
                self.dest.name,
                last.error or last.status,
                t["transition_id"],
                attempt,
                wait,
            )
            if self.stop.wait(wait):
                return None
            attempt += 1

    def _send(self, t: dict[str, Any], raw: bytes) -> Attempt:
        dest = self.dest
        if dest.kind == "slack":
            body = orjson.dumps(slack_message(t))
            headers = {"Content-Type": "application/json"}
        else:
            body = raw
            headers = webhook_headers(t["transition_id"], raw, dest.secret, self.clock())
        try:
            response = self._client.post(dest.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Attempt(None, f"timeout after {dest.timeout_s:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}")
        error = (
            None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        )
        return Attempt(response.status_code, error, response.headers.get("Retry-After"))

    def _dead(
        self,
        msg: Any,
        t: dict[str, Any] | None,
        reason: str,
        attempts: int,
        status: int | None,
        error: str | None,
    ) -> None:
        record: dict[str, Any] = {
            "destination": self.dest.name,
            "reason": reason,
            "attempts": attempts,
            "status": status,
            "error": error,
            "failed_at": datetime.fromtimestamp(self.clock()).astimezone().isoformat(),
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
        }
        if t is not None:
            record["transition"] = t
        else:
            record["raw"] = (msg.value() or b"").decode("utf-8", "replace")[:10_000]
        self.dead_letter(msg.key(), record)
        self.metrics.failed.labels(self.dest.name, reason).inc()
        log.warning(
            "%s: dead letter (%s after %d attempts): %s", self.dest.name, reason, attempts, error
        )

    # -- assignment and the read-back of delivered ids ---------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=15)
        except Exception as exc:  # noqa: BLE001 - then nothing to read back; logged
            log.warning("%s: cannot read committed offsets: %s", self.dest.name, exc)
            committed = []
        ends = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        for tp in partitions:
            self.seen.setdefault(tp.partition, Seen(self.settings.dedupe_depth))
        if ends:
            n = self._read_back(ends)
            log.info(
                "%s: assigned %s; %d delivered ids read back",
                self.dest.name,
                sorted(tp.partition for tp in partitions),
                n,
            )
        self.assigned.set()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.seen.pop(tp.partition, None)
            with contextlib.suppress(KeyError):  # never measured
                self.metrics.lag.remove(self.dest.name, str(tp.partition))

    def _read_back(self, ends: dict[int, int]) -> int:
        s = self.settings
        return read_back(s.bootstrap, s.security, s.topic, s.dedupe_depth, ends, self.seen)

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_EVERY_S or self._consumer is None:
            return
        self._last_lag = now
        consumer = self._consumer
        try:
            assignment = consumer.assignment()
            if not assignment:
                return
            for tp in consumer.position(assignment):
                # cached: the high watermark the last fetch response carried (correct on every
                # broker, see ../shared notes on the embedded one's ListOffsets)
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue
                position = tp.offset if tp.offset >= 0 else high
                self.metrics.lag.labels(self.dest.name, str(tp.partition)).set(
                    max(0, high - position)
                )
        except Exception as exc:  # noqa: BLE001 - a metric; never stops delivery
            log.debug("%s: lag not refreshed: %s", self.dest.name, exc)


class Notifier:
    """The service: a thread per destination, a dead-letter producer, a clean stop."""

    def __init__(
        self, settings: NotifySettings, routing: Routing, metrics: NotifyMetrics | None = None
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.routing = routing
        self.metrics = metrics or NotifyMetrics()
        self.stop = threading.Event()
        self._producer = Producer(producer_config(settings.bootstrap, settings.security))
        self._lock = threading.Lock()
        used = {r.to for r in routing.rules}
        self.workers = [
            DestinationWorker(d, routing, settings, self.metrics, self._dead_letter, self.stop)
            for d in routing.destinations.values()
            if d.name in used
        ]

    def _dead_letter(self, key: bytes | None, record: dict[str, Any]) -> None:
        """Produce and wait for the broker's ack, before the record's offset is stored."""
        with self._lock:
            self._producer.produce(self.settings.dlq_topic, orjson.dumps(record), key=key)
            left = self._producer.flush(30)
        if left:
            raise RuntimeError(
                f"the dead-letter topic {self.settings.dlq_topic} did not take a record in 30 s"
            )

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def wait(self) -> int:
        """Until stopped (a signal, or a destination that failed); 1 if one failed."""
        while not self.stop.wait(0.5):
            pass
        return self.close()

    def close(self) -> int:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=60)
        self._producer.flush(10)
        return 1 if any(w.error for w in self.workers) else 0
