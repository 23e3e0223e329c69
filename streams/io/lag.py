"""Consumer-group lag from the broker's point of view: `pql lag` and `consumer_group_lag()`.

Why from the broker and not from the worker's own bookkeeping: SREs compare the worker's
``pql_consumer_lag_messages`` with what an external exporter would see (committed offsets from
the group's coordinator, log-end offsets from the partition leader). If the two disagree, the
worker's numbers are the suspect. The worker itself calls ``consumer_group_lag`` for its lag gauge.

The embedded broker (Tansu, cluster id ``tansu_cluster``) answers ListOffsets "latest" — and so
``get_watermark_offsets()`` and ``AdminClient.list_offsets`` — with the last batch's base offset
+ 1, which is wrong whenever a batch holds more than one record. Fetch responses carry the right
high watermark, so on that broker we *probe*: assign a throwaway consumer at the committed
offsets, poll until every partition delivered a record or end-of-partition, then read
``get_watermark_offsets(tp, cached=True)``. The probe never joins or commits for the group.
It is correct on any broker, only slower, so it is used whenever the broker cannot be ruled out
as the embedded one (and can be forced with ``probe=True`` / ``--probe``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click

from streams.broker.detect import TANSU_CLUSTER_ID, is_embedded_broker
from streams.io.kafka_config import consumer_config, kafka_options
from streams.io.topics import BrokerUnreachableError, describe_cluster

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_CLUSTER_ID",
    "LagError",
    "LagRow",
    "TopicPartitionKey",
    "committed_offsets",
    "compute_lag",
    "consumer_group_lag",
    "is_embedded",
    "lag",
    "log_end_offsets",
    "total_lag",
]

#: Cluster id the embedded broker reports (see the embedded-broker notes).
EMBEDDED_CLUSTER_ID = TANSU_CLUSTER_ID

#: (topic, partition)
TopicPartitionKey = tuple[str, int]

# librdkafka's "no offset" sentinel (OFFSET_INVALID) in committed-offset answers.
_NO_OFFSET = -1001


class LagError(RuntimeError):
    """The broker did not answer (in time) with what lag needs."""


@dataclass(frozen=True, slots=True)
class LagRow:
    """Lag of one partition for one consumer group.

    ``committed`` is None when the group never committed on that partition; lag is then counted
    from ``log_start`` (what a consumer with ``auto.offset.reset=earliest`` — the worker — still
    has to read)."""

    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int
    lag: int


def compute_lag(
    committed: Mapping[TopicPartitionKey, int | None],
    log_end: Mapping[TopicPartitionKey, int],
    log_start: Mapping[TopicPartitionKey, int] | None = None,
) -> list[LagRow]:
    """Rows of lag, sorted by topic and partition, for every partition in ``log_end``.

    Pure (no broker) so that the arithmetic is unit-tested on its own:
    - lag = log_end - committed, never negative (a commit past the log end happens when a topic
      was recreated; the group has nothing to read, so 0 and not a confusing negative number);
    - a partition without a commit (absent or None or negative sentinel) lags from its log start;
    - committed offsets of partitions absent from ``log_end`` are ignored (not asked for).
    """
    starts = log_start or {}
    rows: list[LagRow] = []
    for key in sorted(log_end):
        topic, partition = key
        end = log_end[key]
        start = max(starts.get(key, 0), 0)
        raw = committed.get(key)
        commit = raw if raw is not None and raw >= 0 else None
        base = commit if commit is not None else start
        rows.append(
            LagRow(
                topic=topic,
                partition=partition,
                committed=commit,
                log_start=start,
                log_end=end,
                lag=max(end - base, 0),
            )
        )
    return rows


def total_lag(rows: Iterable[LagRow]) -> int:
    """Sum of lag over rows."""
    return sum(r.lag for r in rows)


# -- broker access ---------------------------------------------------------------------------


def _admin(bootstrap: str, timeout: float, security: Mapping[str, Any] | None = None) -> Any:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, str | int | float | bool] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": int(timeout * 1000),
    }
    return AdminClient(conf | dict(security or {}))


def is_embedded(
    bootstrap: str, timeout: float = 10.0, *, security: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``bootstrap`` is the embedded broker (Tansu).

    Same check as the worker's (`streams.broker.detect`): the cluster id."""
    return is_embedded_broker(bootstrap, timeout, dict(security) if security else None)


def committed_offsets(
    bootstrap: str,
    group: str,
    partitions: Sequence[TopicPartitionKey] | None = None,
    timeout: float = 10.0,
    *,
    security: Mapping[str, Any] | None = None,
) -> dict[TopicPartitionKey, int | None]:
    """Committed offsets of ``group`` (an OffsetFetch to its coordinator, what an external
    exporter reads). Without ``partitions``: every partition of every topic the group has
    committed on.

    Read by a consumer that carries the group's id and never joins it (`Consumer.committed`),
    not by ``AdminClient.list_consumer_group_offsets``: librdkafka (2.16 and before) follows a
    NULL consumer-group pointer when that admin request is answered NOT_COORDINATOR, which is
    what a coordinator still loading after a broker restart answers, and the process dies of
    SIGSEGV (librdkafka issues #5040 and #5315; the worker reads lag every few seconds)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    conf = consumer_config(bootstrap, group, security)  # it never subscribes: never joins
    conf["socket.timeout.ms"] = int(timeout * 1000)
    conf["log_level"] = 0  # a failure is raised below, once
    consumer = Consumer(conf)
    only_committed = partitions is None
    try:
        if partitions is None:
            # The group's topics are not in an OffsetFetch for named partitions: ask for all
            # of them (internal topics aside) and keep the ones it committed on.
            metadata = consumer.list_topics(timeout=timeout)
            partitions = [
                (name, p)
                for name, md in sorted(metadata.topics.items())
                if not name.startswith("__") and md.error is None
                for p in sorted(md.partitions)
            ]
        tps = [TopicPartition(t, p) for t, p in partitions]
        result = consumer.committed(tps, timeout=timeout) if tps else []
    except KafkaException as exc:
        raise LagError(f"listing committed offsets of group {group!r} failed: {exc!r}") from exc
    finally:
        consumer.close()
    out: dict[TopicPartitionKey, int | None] = {}
    for tp in result:
        if tp.error is not None:
            raise LagError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
        offset = tp.offset if tp.offset >= 0 else None
        if offset is not None or not only_committed:
            out[(tp.topic, tp.partition)] = offset
    return out


def _topic_partitions(
    bootstrap: str,
    topics: Iterable[str],
    timeout: float,
    security: Mapping[str, Any] | None = None,
) -> list[TopicPartitionKey]:
    """All partitions of ``topics``, from one metadata request for *all* topics: on the
    embedded broker a metadata request naming a missing topic creates it (with 4 partitions),
    and `pql lag --topic typo` must not create topics."""
    wanted = sorted(set(topics))
    if not wanted:
        return []
    metadata = _admin(bootstrap, timeout, security).list_topics(timeout=timeout)
    out: list[TopicPartitionKey] = []
    for topic in wanted:
        md = metadata.topics.get(topic)
        if md is None or md.error is not None:
            raise LagError(f"topic {topic!r}: {md.error if md is not None else 'not found'}")
        out.extend((topic, p) for p in sorted(md.partitions))
    return out


def log_end_offsets(
    bootstrap: str,
    start_at: Mapping[TopicPartitionKey, int | None],
    probe: bool,
    timeout: float = 10.0,
    *,
    security: Mapping[str, Any] | None = None,
) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]:
    """(log start, log end) offsets of the partitions in ``start_at``.

    ``probe=False``: ListOffsets through ``get_watermark_offsets`` (right on real Kafka).
    ``probe=True``: the fetch-response workaround for the embedded broker, fetching from
    ``start_at[tp]`` (the committed offset; None = beginning) so that only one fetch's worth of
    records is read per partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # Never used to join or commit (assign only); unique so it cannot collide.
            "group.id": f"pql-lag-probe-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "socket.timeout.ms": int(timeout * 1000),
            # Small prefetch: the probe needs one fetch response per partition, not the backlog.
            "queued.max.messages.kbytes": 1024,
        }
        | dict(security or {})
    )
    starts: dict[TopicPartitionKey, int] = {}
    ends: dict[TopicPartitionKey, int] = {}
    try:
        if not probe:
            for key in start_at:
                lo, hi = consumer.get_watermark_offsets(TopicPartition(*key), timeout=timeout)
                starts[key], ends[key] = lo, hi
            return starts, ends

        consumer.assign(
            [
                TopicPartition(t, p, off if off is not None and off >= 0 else OFFSET_BEGINNING)
                for (t, p), off in start_at.items()
            ]
        )
        pending = set(start_at)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(min(0.5, max(deadline - time.monotonic(), 0.01)))
            if msg is None:
                continue
            key = (str(msg.topic()), int(msg.partition() or 0))
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("lag probe: %s[%s]: %s", key[0], key[1], err)
                continue
            pending.discard(key)
        if pending:
            raise LagError(
                f"lag probe: no fetch response within {timeout}s for "
                + ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
            )
        for key in start_at:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            if lo < 0:  # the low watermark is not always in the cache; it is not affected
                lo, _ = consumer.get_watermark_offsets(TopicPartition(*key), timeout=timeout)
            starts[key], ends[key] = lo, hi
        return starts, ends
    finally:
        consumer.close()


def consumer_group_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str] | None = None,
    *,
    probe: bool | None = None,
    timeout: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> list[LagRow]:
    """Per-partition lag of ``group``, sorted by topic and partition.

    ``topics``: the topics to report (every partition of each, committed or not); default: the
    topics the group has committed offsets on. ``probe``: use the fetch-response workaround for
    log-end offsets; default: only on the embedded broker.

    Raises BrokerUnreachableError (BrokerAuthError at once for refused credentials or TLS)."""
    # One metadata request first: it fails fast and clearly on a wrong address or login, and
    # says which broker this is.
    cluster = describe_cluster(bootstrap, security, timeout)
    if topics:
        partitions = _topic_partitions(bootstrap, topics, timeout, security)
        committed = committed_offsets(bootstrap, group, partitions, timeout, security=security)
    else:
        committed = committed_offsets(bootstrap, group, None, timeout, security=security)
        # Also the partitions the group has not committed on yet, so lag is never understated.
        partitions = _topic_partitions(bootstrap, {t for t, _ in committed}, timeout, security)
    if not partitions:
        return []
    use_probe = cluster.cluster_id == TANSU_CLUSTER_ID if probe is None else probe
    start_at = {key: committed.get(key) for key in partitions}
    starts, ends = log_end_offsets(bootstrap, start_at, use_probe, timeout, security=security)
    return compute_lag(committed, ends, starts)


# -- CLI ---------------------------------------------------------------------------------------


def format_table(rows: Sequence[LagRow]) -> str:
    """Human table with a totals line (``-`` for never-committed partitions, like
    kafka-consumer-groups)."""
    header = ("TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG")
    body = [
        (
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.log_end),
            str(r.lag),
        )
        for r in rows
    ]
    total = ("TOTAL", str(len(rows)), "", str(sum(r.log_end for r in rows)), str(total_lag(rows)))
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(b) for b in body), fmt(total)])


def to_json(group: str, rows: Sequence[LagRow]) -> str:
    """The ``--json`` document: group, partitions (one object per LagRow) and total lag."""
    doc = {
        "group": group,
        "partitions": [asdict(r) for r in rows],
        "total_lag": total_lag(rows),
    }
    return json.dumps(doc, indent=2)


@click.command()
@kafka_options
@click.option("--group", required=True, help="Consumer group id (the worker's app id).")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="Topic to report (repeatable). Default: topics the group has committed on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--probe/--no-probe",
    default=None,
    help="Read log-end offsets from fetch responses (embedded-broker workaround). "
    "Default: only on the embedded broker.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds per broker request.",
)
def lag(
    broker: str,
    security: dict[str, str] | None,
    group: str,
    topics: tuple[str, ...],
    as_json: bool,
    probe: bool | None,
    timeout: float,
) -> None:
    """Per-partition lag of a consumer group: committed offset, log-end offset, lag, totals."""
    try:
        rows = consumer_group_lag(
            broker, group, list(topics) or None, probe=probe, timeout=timeout, security=security
        )
    except (LagError, BrokerUnreachableError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(to_json(group, rows))
        return
    if not rows:
        click.echo(f"group {group!r} has no committed offsets (give --topic to see its lag)")
        return
    click.echo(format_table(rows))
