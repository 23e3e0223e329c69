"""What the stages hold stays bounded while one input partition is 400,000 events behind.

Input partition 0 holds 400,000 events over a day of event time; partitions 1-3 hold
40,000 each over the same day, so they are read far ahead of partition 0 in event time. The
real ingest stage reads them against the real broker with a 60 s `max_drift_ms`: it must pause
the partitions running ahead (watermark alignment) instead of forwarding them all. What the
account stage would hold is then replayed from the by-account topic in record order, through
the very pieces the stage uses (`StreamClock` and `Aligned`): at no point may it hold more
than the documented bound — the events of the partitions running ahead within one max-drift
window, plus one poll (`POLL_BATCH`) per input partition. Without the pausing it would hold
nearly all 120,000 events of partitions 1-3.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Producer

from streams.app.align import Aligned
from streams.app.ingest import POLL_BATCH, Ingest, IngestStats
from streams.app.watermark import StreamClock
from streams.app.wire import DIRECT, decode
from streams.broker.embedded import EmbeddedBroker
from streams.events.codec import decode_event
from streams.events.order import order_key
from streams.io.kafka_config import producer_config
from streams.io.read import read_to_end
from tests.integration.test_ingest_marks import ingest_config

N = 4  # partitions of every topic (as tests/integration/test_ingest_marks.py)
BEHIND = 400_000  # events in partition 0
AHEAD = 40_000  # events in each of partitions 1-3
DAY_MS = 86_400_000
DRIFT_MS = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _line(q: int, i: int, n: int) -> bytes:
    ms = T0 + i * DAY_MS // n
    secs, millis = divmod(ms, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"
    return (
        f'{{"type":"track","event":"Page Viewed","userId":"u{q}","messageId":"p{q}-{i}",'
        f'"timestamp":"{stamp}","context":{{"groupId":"acct-{q}-{i % 50}"}}}}'
    ).encode()


def test_held_events_stay_bounded_while_a_partition_is_far_behind(
    broker: EmbeddedBroker, new_topic_name: Callable[[str], str]
) -> None:
    config = ingest_config(broker, new_topic_name, max_drift_ms=DRIFT_MS)
    producer = Producer(producer_config(broker.bootstrap, linger_ms=20))
    sizes = {0: BEHIND, 1: AHEAD, 2: AHEAD, 3: AHEAD}
    for q, n in sizes.items():
        for i in range(n):
            while True:
                try:
                    producer.produce(config.input_topic, _line(q, i, n), partition=q)
                    break
                except BufferError:
                    producer.poll(0.05)
    assert producer.flush(120) == 0
    total = sum(sizes.values())

    stats = IngestStats()
    ingest = Ingest(config, stats)
    paused_seen: set[int] = set()

    def watch() -> None:
        paused_seen.update(stats.paused)

    runner = threading.Thread(target=ingest.run, kwargs={"after_poll": watch}, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 240
        while stats.consumed < total and time.monotonic() < deadline:
            time.sleep(0.2)
            assert runner.is_alive(), "the ingest stopped"
        assert stats.consumed == total, f"ingest read {stats.consumed} of {total}"
        time.sleep(0.5)
    finally:
        ingest.stop()
        runner.join(30)
    # (Partition 0 may be paused too, for moments: right after the others resume, before they
    # are fetched again, it can run ahead of them.)
    assert paused_seen >= {1, 2, 3}, f"the partitions running ahead were not paused: {paused_seen}"

    # Replay what each by-account partition's stage would hold, record by record.
    starts = {(config.by_account_topic, p): 0 for p in range(N)}
    aligned = {p: Aligned[tuple[int, int]](StreamClock(0, idle_hold_s=0.0)) for p in range(N)}
    entry = {p: aligned[p].entry(None) for p in range(N)}
    most = 0
    forwarded = 0
    for batch in read_to_end(broker.bootstrap, starts):
        for m in batch:
            p = m.partition()
            value = m.value()
            a = aligned[p]
            frame = decode(value)
            assert frame is not None
            items, times = frame
            for _account, q, pos, _path, data in items:
                forwarded += 1
                ev = decode_event(data)
                if not a.due(ev.ts):
                    a.hold(order_key(ev), (q, pos), entry[p])
            if times:
                a.clock.merge(times[DIRECT])
                a.release()
            most = max(most, sum(len(x) for x in aligned.values()))
    assert forwarded == total
    # Events of partitions 1-3 in one drift window, plus one poll per input partition.
    per_window = 3 * AHEAD * DRIFT_MS // DAY_MS + 3
    bound = per_window + N * POLL_BATCH
    assert most <= bound, f"held {most:,} events at once; documented bound {bound:,}"
