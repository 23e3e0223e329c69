"""Recovery at scale: the state of N accounts (default 1M) restored from the changelog into a
wiped data dir.

Getting 1M accounts' state by running the worker would mean ~20M events through it, all kept in
the embedded broker's memory, and that broker never compacts. So the bench writes the changelog
that a compacted topic would hold after such a run: one record per account. Each record is the
final state of one of the reference run's accounts, taken from that run's changelog (the worker's
own bytes), under a new account id, keyed and partitioned exactly as the worker writes it. A
worker then starts on an empty data dir with a new app id. The phase measures the time until
`/readyz` answers (`ready_s`) and until the state gauge shows all N accounts (`indexed_s`: the
account stage has indexed every restored account's next window expiry), both from process start.

What this leaves out: a compacted topic on real Kafka also holds tombstones and not-yet-compacted
segments, and its broker is on other machines.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from bench.procs import BenchError
from streams.app.ingest import partition_of
from streams.io.kafka_config import producer_config
from streams.io.topics import TopicSpec, ensure_topics

COMPACTED = {"cleanup.policy": "compact"}


def latest_states(records: Any, seal_mark: bytes) -> dict[bytes, bytes]:
    """Key -> latest non-empty value of a changelog (seal records and deleted keys left out)."""
    out: dict[bytes, bytes] = {}
    for m in records:
        key = m.key() or b""
        if seal_mark in key:
            continue
        value = m.value()
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    return out


def key_encoder(sample: bytes) -> Callable[[str], bytes]:
    """How the worker encoded the sample key: a JSON string or the raw id."""
    if sample.startswith(b'"'):
        return orjson.dumps
    return str.encode


def write_changelog(
    bootstrap: str,
    topic: str,
    states: dict[bytes, bytes],
    accounts: int,
    partitions: int,
    say: Callable[[str], None],
) -> float:
    """`accounts` records (account `scale-<i>` = the i-th source state, round robin) into
    `topic`, each in its account's partition (murmur2, as the worker's tables). Seconds taken."""
    if not states:
        raise BenchError("recovery at scale: the reference run's changelog holds no state")
    encode = key_encoder(next(iter(states)))
    values = list(states.values())
    ensure_topics(bootstrap, [TopicSpec(topic, partitions, dict(COMPACTED))])
    conf = producer_config(bootstrap, None, linger_ms=20)
    conf["queue.buffering.max.messages"] = 1_000_000
    producer = Producer(conf)
    t0 = time.monotonic()
    for i in range(accounts):
        account = f"scale-{i:07d}"
        value = values[i % len(values)]
        while True:
            try:
                producer.produce(
                    topic, value, encode(account), partition=partition_of(account, partitions)
                )
                break
            except BufferError:
                producer.poll(0.1)
        if i % 200_000 == 0 and i:
            say(f"recovery at scale: {i:,}/{accounts:,} changelog records written")
    left = producer.flush(120)
    if left:
        raise BenchError(f"recovery at scale: {left} changelog records not delivered")
    return time.monotonic() - t0


def measure(
    bench: Any,
    states: dict[bytes, bytes],
    accounts: int,
    partitions: int,
    metric_sum: Callable[..., float],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The phase: synthesize the changelog from `states` (`latest_states` of the reference
    run's changelog), start a worker on an empty data dir, time it."""
    app_id = f"bench-{bench.run_id}-scale"
    topics = (f"{app_id}-events", f"{app_id}-out", f"{app_id}-dlq")
    ensure_topics(bench.bootstrap, [TopicSpec(t, partitions) for t in topics])
    say(
        f"recovery at scale: writing {accounts:,} accounts' state (copies of the reference "
        f"run's {len(states):,}) to the changelog of app {app_id}"
    )
    written_s = write_changelog(
        bench.bootstrap,
        f"{app_id}-state-accounts-changelog",
        states,
        accounts,
        partitions,
        say,
    )
    data_dir: Path = bench.workdir / f"{app_id}-data"
    w = bench.worker("scale", app_id, topics, data_dir).start()
    say(f"recovery at scale: worker pid {w.pid} starting on an empty data dir")
    try:
        ready = w.wait_ready(timeout=900)
        # Ready means recovered; the account stage then indexes every restored account's
        # window expiry (on its first record, a mark) and the state gauge shows them.
        deadline = time.monotonic() + 300
        while True:
            m = w.metrics()
            held = int(metric_sum(m, "pql_state_accounts"))
            if held >= accounts or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        indexed = time.monotonic() - w.started_at
        rss = w.peak_rss_kib()
    finally:
        w.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    restored = int(metric_sum(m, "pql_state_restored_records_total", 'table="accounts"'))
    say(
        f"recovery at scale: ready after {ready:.1f} s, {held:,} accounts indexed after "
        f"{indexed:.1f} s; {restored:,} records restored"
    )
    if held != accounts:
        raise BenchError(f"recovery at scale: {held:,} accounts after recovery, not {accounts:,}")
    return {
        "accounts": accounts,
        "distinct_source_states": len(states),
        "changelog_write_s": round(written_s, 1),
        "ready_s": round(ready, 2),
        "indexed_s": round(indexed, 2),
        "restored_records": restored,
        "state_accounts_metric_after": held,
        "peak_rss_mib": round(rss / 1024, 1),
    }
