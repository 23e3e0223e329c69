"""The ingest stage: reads the input topic with confluent-kafka (librdkafka) in its own process
(`streams.app.ingest.process`, so parsing and routing do not share the worker's GIL), parses
and routes each event, and forwards them to the internal topics in *frames* — one record per
destination partition per poll — so the Faust agents pay their per-record cost (~0.5 ms of event
loop) once per frame instead of once per event.

At-least-once: input offsets are committed only after every record produced from them is
delivered, so a crash re-reads and re-forwards; the account stage drops what
it already applied (`streams/app/wire.py`). The consumer group is the app id (`pql lag --group
pql-<model>` shows the input lag); the Faust agents use `<app id>-state`.

Stream time goes in band: each poll's frames end with the input progress after it (a partition
without events gets it alone, every `mark_interval_s`), written once the previous poll's frames
are delivered (`streams.app.watermark`). Watermark alignment: an input partition whose event time
runs more than `max_drift_ms` ahead of the slowest active one is paused until the others catch
up, so the stages, which hold events until stream time passes them, hold a bounded amount.

Local routing state (`--input-key user`; `streams.events.routing.route_local`: who joined which
group, the user traits the model reads) is kept per input partition and made durable, and
restored so re-read input is routed exactly as the first time (`streams.app.ingest.local`).
(One rare edge remains on a compacting Kafka: a user's record rewritten by not-yet-committed
input, after compaction removed the previous version, restores as unknown; that user's next
events then take the user stage.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streams.app.dlq import dlq_headers
from streams.app.ingest.config import (
    POLL_BATCH,
    POLL_TIMEOUT_S,
    SETTLE_WARN_S,
    IngestConfig,
    IngestStats,
    partition_of,
)
from streams.app.ingest.local import encode_local, restore_local
from streams.app.watermark import NO_TIME, InputProgress
from streams.app.wire import (
    DIRECT,
    SYNTHETIC_DELIVERED,
    UNDELIVERED,
    Item,
    frames,
    position,
)
from streams.events.codec import encode_event
from streams.events.parse import parse_event
from streams.events.resolver import UserRecord
from streams.events.routing import route_local
from streams.events.types import EventType, Reject
from streams.io.kafka_config import consumer_config, producer_config
from streams.io.read import read_partition

log = logging.getLogger("streams.ingest")
# Seek errors after a pause that only mean the prefetch stays (see `_align`).
_SEEK_SKIPPED = frozenset({KafkaError._STATE, KafkaError._OUTDATED})


class Ingest:
    def __init__(self, config: IngestConfig, stats: IngestStats) -> None:
        self.config = config
        self.stats = stats
        self.progress = InputProgress(config.idle_s)  # the stream time the frames carry
        self._marked_at = 0.0
        self.trait_keys = config.trait_keys
        self.partitions = config.partitions
        self._stop = threading.Event()
        self.local: dict[int, dict[str, UserRecord]] = {}  # input partition -> user -> record
        self._uncommitted: dict[int, int] = {}  # input partition -> last offset forwarded
        conf = consumer_config(
            config.broker,
            config.group,
            config.security,
            session_timeout_ms=config.session_timeout_ms,
            fetch_wait_ms=config.fetch_wait_ms,
        )
        if config.instance_id:
            conf["group.instance.id"] = config.instance_id  # static membership
        conf["on_commit"] = self._on_commit
        self._consumer = Consumer(conf)
        self._producer = Producer(producer_config(config.broker, config.security, linger_ms=2))

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run` to return after the poll under way (safe from a signal handler)."""
        self._stop.set()

    def run(self, after_poll: Callable[[], None] | None = None) -> None:
        """Poll until `stop`; `after_poll` runs after every poll (and so after every
        assignment change). Raises what failed; closes the clients either way."""
        try:
            self._consumer.subscribe(
                [self.config.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            while not self._stop.is_set():
                self._poll_once()
                self._align(time.monotonic())
                if after_poll is not None:
                    after_poll()
        finally:
            try:
                self._settle(asynchronous=False)
                self._consumer.close()  # commits nothing new: offsets are committed per poll
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("closing the ingest consumer")

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = {
            tp.partition: tp.offset
            for tp in consumer.committed(partitions, timeout=30)
            if tp.offset is not None and tp.offset >= 0
        }
        now = time.monotonic()
        for tp in partitions:
            q = tp.partition
            self.local[q] = self._restore_local(q, committed.get(q, 0))
            if committed.get(q, 0) > 0:
                self._restore_stream_time(q, committed[q], now)
            self.progress.assign(q, now, committed.get(q, 0))
        self.stats.assigned |= {tp.partition for tp in partitions}
        log.info(
            "ingest assigned input partitions %s (%d users restored)",
            sorted(self.stats.assigned),
            sum(len(self.local[tp.partition]) for tp in partitions),
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._settle(asynchronous=False)  # what was read so far is ours to commit
        for tp in partitions:
            self.progress.forget(tp.partition)
            self.local.pop(tp.partition, None)
        revoked = {tp.partition for tp in partitions}
        self.stats.assigned -= revoked
        self.stats.paused -= revoked

    def _read_partition(self, topic: str, partition: int, start: int) -> Iterator[Message]:
        """Every record of one partition from `start` to its end."""
        return read_partition(self.config.broker, topic, partition, start, self.config.security)

    def _restore_local(self, q: int, committed: int) -> dict[str, UserRecord]:
        return restore_local(self._read_partition(self.config.users_topic, q, 0), committed)

    def _restore_stream_time(self, q: int, committed: int, now: float) -> None:
        """Stream time survives a restart: the event time of the last committed record."""
        for m in self._read_partition(self.config.input_topic, q, committed - 1):
            ev = parse_event(m.value() or b"")
            if not isinstance(ev, Reject):
                offset = m.offset()
                assert offset is not None  # read_partition yields records, never errors
                self.progress.observe(q, ev.ts, offset, None, now)
            return

    # -- one poll -----------------------------------------------------------------------------
    def _poll(self) -> list[Message]:
        """What is there to read: waits up to `POLL_TIMEOUT_S` for a first record, then up to
        `linger_s` more for others (up to `POLL_BATCH`). `consume(n, timeout)` alone waits out
        the whole timeout unless n records come: at a low rate every record would wait it;
        without the linger every few records would make a record per internal partition,
        and each costs the stages about half a millisecond in Faust."""
        consumer = self._consumer
        msgs = consumer.consume(1, POLL_TIMEOUT_S)
        if not msgs:
            return msgs
        deadline = time.monotonic() + self.config.linger_s
        while len(msgs) < POLL_BATCH:
            left = deadline - time.monotonic()
            more = consumer.consume(POLL_BATCH - len(msgs), max(left, 0.0))
            msgs += more
            if left <= 0 or not more:
                break
        return msgs

    def _poll_once(self) -> None:
        """One poll: route what it read, then write one frame per internal partition — its
        events and the input progress after them (a partition with no events gets the
        progress alone, at most every `mark_interval_s`). The progress follows, in each
        partition, every record forwarded from the input it describes, so a stage never reads
        it before them; and it is written only once the previous poll's frames are delivered.
        The input offsets are committed once the frames are delivered."""
        msgs = self._poll()
        to_account: dict[int, list[Item]] = defaultdict(list)
        to_user: dict[int, list[Item]] = defaultdict(list)
        last: dict[int, int] = {}
        latest: dict[int, int] = {}
        n = self.partitions
        trait_keys = self.trait_keys
        users_topic = self.config.users_topic
        consumed = 0
        now_ms = time.time() * 1000  # the clock-skew guard's "now" (no `receivedAt`)
        adjusted = self.stats.adjusted
        local_routing = self.config.local_routing
        track = EventType.TRACK
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("input consume error: %s", err)
                continue
            q = m.partition()
            offset = m.offset()
            assert q is not None and offset is not None  # always set on a record (no error)
            last[q] = offset
            consumed += 1
            raw = m.value() or b""
            ev = parse_event(raw, now_ms)
            if isinstance(ev, Reject):
                self._dead_letter(raw, m.key(), ev)
                continue
            if ev.adjusted is not None:
                adjusted[ev.adjusted] = adjusted.get(ev.adjusted, 0) + 1
            if ev.ts > latest.get(q, -(2**62)):
                latest[q] = ev.ts
            uid = ev.user_id or ""
            if not local_routing:
                # Only a track that names its account needs nothing of its user: the rest is
                # routed by the user stage, which sees every call of the user in time order.
                if ev.type is track and ev.account_id:
                    to_account[partition_of(ev.account_id, n)].append(
                        (ev.account_id, q, position(offset, 0), DIRECT, encode_event(ev))
                    )
                else:
                    to_user[partition_of(uid, n)].append((uid, q, offset, UNDELIVERED, raw))
                continue
            users = self.local.setdefault(q, {})
            deliveries, forward, record = route_local(ev, users.get(uid), trait_keys)
            if record is not None:
                users[uid] = record
                value = encode_local(offset, record)
                self._produce(users_topic, value, q, key=uid.encode())
            for k, (account, delivered) in enumerate(deliveries):
                item = (account, q, position(offset, k), DIRECT, encode_event(delivered))
                to_account[partition_of(account, n)].append(item)
            if forward:  # the user stage gets the original bytes (its rejects go to the DLQ)
                mark = SYNTHETIC_DELIVERED if len(deliveries) > 1 else DIRECT
                to_user[partition_of(uid, n)].append((uid, q, offset, mark, raw))
        self.stats.consumed += consumed
        now = time.monotonic()
        for q in last:
            # A poll whose records were all rejected still read the partition (heard from).
            self.progress.observe(q, latest.get(q, NO_TIME), last[q], self._highwater(q), now)
        # The previous poll's frames were delivered while this one lingered: wait for the rest
        # of them (so this poll's stream time follows delivered records only) and commit.
        self._settle()
        self._write_frames(to_account, to_user, now)
        self._uncommitted.update(last)  # committed once delivered: by the next poll's settle

    def _settle(self, asynchronous: bool = True) -> None:
        """Wait until everything produced so far is delivered, then commit the input offsets
        it covers. Asynchronous by default: a commit lost with a crash only means re-reading
        (the stages skip what they already have); its result: `_on_commit`."""
        waited = 0.0
        while remaining := self._producer.flush(SETTLE_WARN_S):
            # Still undelivered: the broker is away (or slow). The producer keeps retrying
            # until its message.timeout.ms, when the delivery report fails the record (raised
            # here). A broker outage is ridden out like this, not turned into an exit.
            self._check_delivery()
            if self._stop.is_set():
                return  # nothing committed: what was read is read again after a restart
            waited += SETTLE_WARN_S
            log.warning(
                "%d forwarded records not delivered after %.0f s: still trying (the broker "
                "does not take them; a record is given up after message.timeout.ms)",
                remaining,
                waited,
            )
        self._check_delivery()
        if not self._uncommitted:
            return
        topic = self.config.input_topic
        offsets = [TopicPartition(topic, q, o + 1) for q, o in self._uncommitted.items()]
        self._uncommitted = {}
        if asynchronous:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def _write_frames(
        self, to_account: dict[int, list[Item]], to_user: dict[int, list[Item]], now: float
    ) -> None:
        """Every internal partition with events gets them and the input progress; the others
        get the progress alone once `mark_interval_s` has passed since the last such round
        (and only once partitions are assigned: a mark of nothing says nothing)."""
        marking = now - self._marked_at >= self.config.mark_interval_s and bool(self.stats.assigned)
        if not (marking or to_account or to_user):
            return
        self._check_delivery()
        if marking:
            self._marked_at = now
            # A partition marked behind may have been drained since (or, restored after a
            # restart, not fetched yet): its fetch's high watermark tells. Busy partitions need
            # no refresh.
            self.progress.refresh({q: self._highwater(q) for q in self.progress.behind()})
        times = {DIRECT: self.progress.snapshot(now)} if self.stats.assigned else None
        for topic, batches in (
            (self.config.by_account_topic, to_account),
            (self.config.by_user_topic, to_user),
        ):
            for part in range(self.partitions):
                items = batches.get(part)
                for value in frames(items, times if items or marking else None):
                    self._produce(topic, value, part)
        self._producer.poll(0)

    def _align(self, now: float) -> None:
        """Watermark alignment, after every poll: pause the input partitions running more than
        `max_drift_ms` ahead of the slowest active one, resume them once it caught up."""
        ahead = self.progress.ahead(now, self.config.max_drift_ms) & self.stats.assigned
        paused = self.stats.paused
        if ahead == paused:
            return
        topic = self.config.input_topic
        pause = sorted(ahead - paused)
        resume = sorted(paused - ahead)
        if pause:
            self._consumer.pause([TopicPartition(topic, q) for q in pause])
            # librdkafka keeps serving what it prefetched for a paused partition (up to
            # queued.min.messages): seeking it to where reading stands drops that prefetch,
            # and it is fetched again on resume. A partition not fetched yet has none (its
            # seek is refused with _STATE); a seek overtaken by another operation on the
            # partition (just assigned, its fetch starting: _OUTDATED) leaves the prefetch,
            # which is then read as usual. Either way nothing is lost: the drift bound is a
            # memory bound, so a failed seek is never worth stopping the ingest for.
            for q in pause:
                try:
                    self._consumer.seek(TopicPartition(topic, q, self.progress.next_offset(q)))
                except KafkaException as exc:
                    err = exc.args[0]
                    level = logging.DEBUG if err.code() in _SEEK_SKIPPED else logging.WARNING
                    log.log(level, "input partition %d paused with its prefetch kept: %s", q, err)
        if resume:
            self._consumer.resume([TopicPartition(topic, q) for q in resume])
        self.stats.paused = frozenset(ahead)

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is not None:  # the next commit covers these offsets too
            log.warning("input offset commit failed (retried with the next): %s", err)
            return
        self.stats.committed_at = time.time()

    _delivery_error: Any = None

    def _check_delivery(self) -> None:
        if self._delivery_error is not None:
            raise RuntimeError(f"forwarding failed: {self._delivery_error}")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_error = err

    def _produce(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                return
            except BufferError:  # local queue full: let it drain
                self._producer.poll(0.1)

    def _dead_letter(self, raw: bytes, key: bytes | None, reject: Reject) -> None:
        self._produce(self.config.dlq_topic, raw, key=key, headers=dlq_headers(reject, "ingest"))
        reason = reject.reason.value
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1

    # -- stream time --------------------------------------------------------------------------
    def _highwater(self, partition: int) -> int | None:
        """From the last fetch response (correct on the embedded broker, unlike ListOffsets)."""
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.config.input_topic, partition), cached=True
            )
        except Exception:  # noqa: BLE001 - unknown yet
            return None
        return high if high >= 0 else None
