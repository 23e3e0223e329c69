"""`pql produce`: load Segment events from JSON-lines files into the input topic.

Each record's value is the line exactly as read (the worker does the real parsing); its key is
the account the event belongs to, resolved the way the worker does (`AccountResolver`: groupId,
else the user's latest group call), falling back to the user id. Keys are partitioned with
murmur2 (see `streams.io.kafka_config`), so an account's events land on the partition the
worker's tables expect and stay in order. Lines that do not parse go out unkeyed and unchanged:
the worker must see them to dead-letter them with a reason.
"""

from __future__ import annotations

import gzip
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import click
from confluent_kafka import KafkaError, Message, Producer

from streams.events.parse import parse_event
from streams.events.resolver import AccountResolver
from streams.events.types import EventType, Reject
from streams.io.kafka_config import kafka_options, producer_config
from streams.io.topics import (
    BrokerUnreachableError,
    TopicMismatchError,
    TopicSpec,
    ensure_topics,
    topic_partitions,
)

DEFAULT_TOPIC = "product-events"
DEFAULT_PARTITIONS = 4  # used when the topic does not exist yet
GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_EVERY_S = 0.25
FLUSH_TIMEOUT_S = 60.0


class ProduceError(RuntimeError):
    """Events could not be delivered; the message says what to do."""


@dataclass(slots=True)
class ProduceStats:
    """What one `produce_file` call did."""

    read: int = 0  # non-blank lines read
    by_account: int = 0  # keyed by the resolved account
    by_user: int = 0  # valid event, no account known: keyed by the user id
    unkeyed: int = 0  # did not parse: sent as-is without a key
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    partitions: Counter[int] = field(default_factory=Counter)  # delivered records per partition
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Lines read per second so far."""
        return self.read / self.elapsed if self.elapsed > 0 else 0.0


class EventKeyer:
    """Chooses the record key of each raw line, remembering users' group calls across lines
    (so a track call without groupId is keyed by the account the user joined earlier).

    With `next_group` (user -> the account of their first group call in the input, from
    `first_groups`), an event from a user who has not joined a group *yet* — typically the
    identify call at sign-up — is keyed by the account they are about to join, so every event
    of an account shares its partition and keeps the input's order (what makes the worker's
    transitions equal `pql backtest`'s)."""

    def __init__(self, next_group: Mapping[str, str] | None = None) -> None:
        self.resolver = AccountResolver()
        self.next_group = next_group or {}

    def key(self, raw: bytes) -> tuple[str | None, str]:
        """(key, kind) where kind is "account", "user" or "unkeyed"."""
        ev = parse_event(raw)
        if isinstance(ev, Reject):
            return None, "unkeyed"
        account = self.resolver.resolve(ev)
        if isinstance(account, str) and account:
            return account, "account"
        if ev.user_id:
            upcoming = self.next_group.get(ev.user_id)
            if upcoming:
                return upcoming, "account"
            return ev.user_id, "user"
        return None, "unkeyed"  # pragma: no cover - the parser rejects events without a user


def first_groups(paths: Iterable[str | Path]) -> dict[str, str]:
    """user -> groupId of the user's first group call, over the whole input (a cheap first
    pass: only lines that mention "group" are parsed)."""
    out: dict[str, str] = {}
    for line in read_lines(paths):
        if b"group" not in line:
            continue
        ev = parse_event(line)
        if isinstance(ev, Reject) or ev.type is not EventType.GROUP or not ev.user_id:
            continue
        if ev.account_id:
            out.setdefault(ev.user_id, ev.account_id)
    return out


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file (or `-` for stdin) for binary reading, gunzipping when it starts with the gzip
    magic bytes (so `.jsonl.gz`, a misnamed file and `zcat`-less pipes all just work)."""
    raw: Any = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    result: BinaryIO = raw
    return result


def read_lines(paths: Iterable[str | Path]) -> Iterator[bytes]:
    """Each non-blank line of each file in turn, without its line terminator."""
    for path in paths:
        f = open_binary(path)
        try:
            for line in f:
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line
        finally:
            if f is not sys.stdin.buffer:
                inner = getattr(f, "fileobj", None)  # a GzipFile does not close what it wraps
                f.close()
                if inner is not None and inner is not sys.stdin.buffer:
                    inner.close()


def produce_file(
    bootstrap: str,
    paths: Sequence[str | Path],
    topic: str = DEFAULT_TOPIC,
    partitions: int | None = None,
    rate: float | None = None,
    security: Mapping[str, Any] | None = None,
    on_progress: Callable[[ProduceStats], None] | None = None,
) -> ProduceStats:
    """Produce every line of `paths` (`-` = stdin) to `topic`; returns the counts.

    `partitions`: None accepts the topic as it is (creating it with DEFAULT_PARTITIONS if
    missing); a number also requires an existing topic to have exactly that many.
    `rate`: events per second to pace at (demos), None for as fast as possible.
    Raises BrokerUnreachableError, TopicMismatchError, ProduceError (undelivered events).
    """
    if partitions is None:
        if topic_partitions(bootstrap, topic, security) is None:
            ensure_topics(bootstrap, [TopicSpec(topic, DEFAULT_PARTITIONS)], security)
    else:
        ensure_topics(bootstrap, [TopicSpec(topic, partitions)], security)

    stats = ProduceStats()
    conf = producer_config(bootstrap, security)
    conf["message.timeout.ms"] = int(FLUSH_TIMEOUT_S * 1000)

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            stats.delivered += 1
            stats.partitions[msg.partition()] += 1  # type: ignore[index]
        else:
            stats.failed += 1
            if stats.first_error is None:
                stats.first_error = err.str()

    producer = Producer(conf)
    # Files can be read twice: look ahead for the group each user joins (stdin cannot).
    seekable = all(str(p) != "-" for p in paths)
    keyer = EventKeyer(first_groups(paths) if seekable else None)
    next_report = time.monotonic() + PROGRESS_EVERY_S
    for line in read_lines(paths):
        key, kind = keyer.key(line)
        if kind == "account":
            stats.by_account += 1
        elif kind == "user":
            stats.by_user += 1
        else:
            stats.unkeyed += 1
        if rate:
            _pace(producer, stats.started + stats.read / rate)
        _produce(producer, topic, line, key, on_delivery)
        stats.read += 1
        if stats.read % 1000 == 0 or rate:
            producer.poll(0)
            now = time.monotonic()
            if on_progress is not None and now >= next_report:
                on_progress(stats)
                next_report = now + PROGRESS_EVERY_S
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    stats.finished = time.monotonic()
    if on_progress is not None:
        on_progress(stats)
    if remaining or stats.failed:
        why = stats.first_error or f"{remaining} still queued after {FLUSH_TIMEOUT_S:.0f} s"
        raise ProduceError(
            f"{stats.failed + remaining} of {stats.read} events were not delivered to {topic} at "
            f"{bootstrap} ({why}). Check the broker is up (`pql broker` starts one) and rerun; "
            "the worker de-duplicates by messageId, so re-producing the file is safe."
        )
    return stats


def _pace(producer: Producer, due: float) -> None:
    """Wait until `due`, serving delivery reports meanwhile."""
    while (wait := due - time.monotonic()) > 0:
        producer.poll(min(wait, 0.1))


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: str | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)


# -- CLI ----------------------------------------------------------------------------------------


@click.command("produce")
@kafka_options
@click.option("--topic", default=DEFAULT_TOPIC, show_default=True, help="Topic to produce to.")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help=f"Require this partition count (created with it if missing; default: accept the "
    f"existing topic, or create it with {DEFAULT_PARTITIONS}).",
)
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Events per second."
)
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
def produce(
    broker: str,
    security: dict[str, str] | None,
    topic: str,
    partitions: int | None,
    rate: float | None,
    files: tuple[str, ...],
) -> None:
    """Produce Segment events from JSON-lines FILES (.jsonl or .jsonl.gz; - for stdin),
    keyed by account."""
    from rich.console import Console

    err = Console(stderr=True)
    for f in files:
        if f != "-" and not Path(f).is_file():
            raise click.BadParameter(f"{f} is not a file", param_hint="FILES")
    try:
        with _progress(err) as report:
            stats = produce_file(broker, files, topic, partitions, rate, security, report)
    except (BrokerUnreachableError, TopicMismatchError, ProduceError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot read input: {e}") from e
    spread = ", ".join(f"p{p}: {n}" for p, n in sorted(stats.partitions.items()))
    err.print(
        f"[bold]{stats.delivered}[/] events to [bold]{topic}[/] at {broker} in "
        f"{stats.elapsed:.1f} s ({stats.rate:,.0f}/s): {stats.by_account} keyed by account, "
        f"{stats.by_user} by user (no account known yet), {stats.unkeyed} unparseable sent "
        f"as-is for the dead-letter topic. Partitions: {spread or 'none'}.",
        highlight=False,
    )


class _progress:
    """A rich live line "N events  R events/s" (plain lines when stderr is not a terminal are
    suppressed: the summary says it all)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,.0f} events"),
            TextColumn("{task.fields[rate]:,.0f} events/s"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("produce", total=None, rate=0.0)

    def __enter__(self) -> Callable[[ProduceStats], None]:
        self._progress.start()

        def report(stats: ProduceStats) -> None:
            self._progress.update(self._task, completed=stats.read, rate=stats.rate)

        return report

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
