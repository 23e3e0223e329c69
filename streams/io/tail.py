"""`pql tail`: watch PQL transitions arrive, one readable table row each (or raw JSON lines).

Formatting (`format_transition`) is a pure function, apart from the consumer loop
(`iter_transitions`), so it is unit-tested without a broker.

The consumer assigns all partitions itself instead of joining a group: no ~3 s JoinGroup wait on
the embedded broker, no committed offsets left behind, and several tails can watch at once. It
never names a missing topic to the broker (which would auto-create it with 4 partitions before
the worker creates it with its own count); it waits for the topic to appear instead.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import click
import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from streams.io.kafka_config import consumer_config, kafka_options
from streams.io.topics import BrokerUnreachableError, topic_partitions

DEFAULT_TOPIC = "pql-transitions"
TOP_REASONS = 3
PIPE_WIDTH = 160
TAIL_FETCH_WAIT_MS = 20  # ms; see `tail`
COLUMNS = ("occurred_at", "account", "kind", "score", "action", "why")
KIND_STYLE = {
    "qualified": "bold green",
    "disqualified": "red",
    "segment_entered": "cyan",
    "segment_exited": "yellow",
}


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One transition as display strings, in COLUMNS order."""

    occurred_at: str
    account: str
    kind: str
    score: str
    reasons: str
    action: str = ""  # the playbook's, for an alert: route, owner, respond-by

    def cells(self) -> tuple[str, str, str, str, str, str]:
        return (self.occurred_at, self.account, self.kind, self.score, self.action, self.reasons)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "?"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")  # 100.0 -> 100, 99.5 -> 99.5
    return "?"


def _points(value: Any) -> str:
    text = _num(value)
    return text if text.startswith("-") or text == "?" else f"+{text}"


def format_transition(t: Mapping[str, Any], top: int = TOP_REASONS) -> TransitionRow:
    """Display strings for one transition (see schemas/pql-transition.schema.json).

    Tolerates missing or odd fields ("?") so one malformed record never stops a tail. "Why" is
    the transition's `summary` sentence; without one, the `top` contributions by points (largest
    first), e.g. `messages >= 5 (+40)`.
    """
    kind = str(t.get("kind") or "?")
    segment = t.get("segment")
    if segment:
        kind = f"{kind} {segment}"
    if t.get("trigger") == "model_change":  # a new model version decided it, at its switch
        model = t.get("model")
        version = model.get("version", "?") if isinstance(model, Mapping) else "?"
        kind = f"{kind} (switch to v{version})"
    previous, score = t.get("previous_score"), t.get("score")
    score_text = f"{_num(previous)} -> {_num(score)}" if previous is not None else _num(score)
    raw_reasons = t.get("reasons")
    reasons = (
        [r for r in raw_reasons if isinstance(r, Mapping)] if isinstance(raw_reasons, list) else []
    )
    ranked = sorted(reasons, key=_reason_weight, reverse=True)
    shown = [f"{r.get('rule', '?')} ({_points(r.get('points'))})" for r in ranked[:top]]
    if len(ranked) > top:
        shown.append(f"+{len(ranked) - top} more")
    summary = t.get("summary")
    if isinstance(summary, str) and summary:
        shown = [summary]  # the sentence says why, for a segment its own condition
    return TransitionRow(
        occurred_at=str(t.get("occurred_at") or "?"),
        account=str(t.get("account_id") or "?"),
        kind=kind,
        score=score_text,
        reasons="; ".join(shown) or "-",
        action=format_action(t),
    )


def _minute(iso: Any) -> str:
    """2026-01-08T02:00:00.002Z -> 2026-01-08 02:00 (UTC, like every time shown)."""
    text = str(iso)
    return f"{text[:10]} {text[11:16]}" if len(text) >= 16 and text[10:11] == "T" else text


def format_action(t: Mapping[str, Any]) -> str:
    """What the transition's playbook asks for: `route -> owner, by respond-by` for an alert,
    `route -> owner (cooldown until ...)` for one the cooldown held back, else nothing."""
    pb = t.get("playbook")
    if not isinstance(pb, Mapping):
        return ""
    route = str(pb.get("route") or "?")
    owner = pb.get("owner")
    who = f"{route} -> {owner}" if owner else route
    if pb.get("alert") is True:
        by = pb.get("respond_by")
        return f"{who}, by {_minute(by)}" if by else who
    until = pb.get("cooldown_until")
    if until:
        return f"{who} (cooldown until {_minute(until)})"
    return ""


def _reason_weight(reason: Mapping[str, Any]) -> float:
    points = reason.get("points")
    if isinstance(points, int | float) and not isinstance(points, bool):
        return abs(float(points))
    return 0.0


@dataclass(frozen=True, slots=True)
class TailRecord:
    """One record read from the transitions topic; `transition` is None if it is not a JSON
    object (shown as such rather than crashing the tail)."""

    value: bytes
    transition: dict[str, Any] | None
    partition: int
    offset: int


def decode_transition(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def iter_transitions(
    bootstrap: str,
    topic: str = DEFAULT_TOPIC,
    from_beginning: bool = False,
    timeout: float | None = None,
    security: Mapping[str, Any] | None = None,
    poll_s: float = 0.5,
    on_waiting: Callable[[], None] | None = None,
) -> Iterator[TailRecord]:
    """Records of `topic` as they arrive, until `timeout` seconds have passed (None: forever).

    Waits for the topic to exist. Without `from_beginning` it starts at the end. (On the embedded
    broker "end" can resolve a few records early when the last write was a multi-record batch: a
    known ListOffsets bug; the worker writes transitions one by one in practice.)
    `on_waiting` is called once if the topic does not exist yet. Raises BrokerUnreachableError.
    """
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float:
        return poll_s if deadline is None else min(poll_s, deadline - time.monotonic())

    partitions = topic_partitions(bootstrap, topic, security)
    if partitions is None and on_waiting is not None:
        on_waiting()
    while partitions is None:
        wait = left()
        if wait <= 0:
            return
        time.sleep(wait)
        partitions = topic_partitions(bootstrap, topic, security)

    # A short fetch wait: the embedded broker answers a multi-partition fetch only after the
    # full wait (librdkafka's 500 ms), and for an interactive tail the idle fetches are nothing.
    consumer = Consumer(
        consumer_config(bootstrap, None, security, fetch_wait_ms=TAIL_FETCH_WAIT_MS)
    )
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in range(partitions)])
        while (wait := left()) > 0:
            msg = consumer.poll(wait)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise BrokerUnreachableError(bootstrap, err.str())
                continue  # transient: librdkafka retries
            value = msg.value() or b""
            yield TailRecord(
                value, decode_transition(value), msg.partition() or 0, msg.offset() or 0
            )
    finally:
        consumer.close()


# -- CLI ----------------------------------------------------------------------------------------


class _TablePrinter:
    """Prints a header once, then each transition as a row with the same column widths, so rows
    line up although each is printed the moment it arrives."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        if not self.console.is_terminal and not os.environ.get("COLUMNS"):
            # logs and pipes: wide rows rather than wrapped ones (COLUMNS, if set, decides)
            self.console = Console(highlight=False, width=PIPE_WIDTH)

    def _table(self, header: bool) -> Any:
        from rich.table import Table

        table = Table(show_header=header, box=None, pad_edge=False, expand=True)
        table.add_column(COLUMNS[0], min_width=24, no_wrap=True)
        table.add_column(COLUMNS[1], min_width=10, max_width=24, overflow="ellipsis", no_wrap=True)
        table.add_column(COLUMNS[2], width=30, overflow="fold")
        table.add_column(COLUMNS[3], min_width=10, no_wrap=True, justify="right")
        table.add_column(COLUMNS[4], min_width=6, max_width=60, overflow="fold")
        table.add_column(COLUMNS[5], ratio=1, min_width=20, overflow="fold")
        return table

    def header(self) -> None:
        table = self._table(header=True)
        self.console.print(table)

    def row(self, record: TailRecord) -> None:
        table = self._table(header=False)
        if record.transition is None:
            preview = record.value[:80].decode("utf-8", "replace")
            table.add_row("?", "?", "[red]not a transition[/]", "", "", preview)
        else:
            cells = format_transition(record.transition).cells()
            style = KIND_STYLE.get(str(record.transition.get("kind")), "")
            table.add_row(*cells[:2], f"[{style}]{cells[2]}[/]" if style else cells[2], *cells[3:])
        self.console.print(table)


@click.command("tail")
@kafka_options
@click.option("--topic", default=DEFAULT_TOPIC, show_default=True)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest transition.")
@click.option("--max", "max_count", type=click.IntRange(min=1), default=None, help="Stop after N.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after S seconds (exit 1 if --max was given and not reached).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each transition's raw JSON line.")
def tail(
    broker: str,
    security: dict[str, str] | None,
    topic: str,
    from_beginning: bool,
    max_count: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Print PQL transitions as they arrive."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    printer = None if as_json else _TablePrinter()
    seen = 0
    try:
        if printer is not None:
            printer.header()

        def waiting() -> None:
            click.echo(f"waiting for topic {topic} (the worker creates it)...", err=True)

        records = iter_transitions(
            broker, topic, from_beginning, timeout, security, on_waiting=waiting
        )
        for record in records:
            if printer is None:
                click.echo(record.value.decode("utf-8", "replace"))
            else:
                printer.row(record)
            seen += 1
            if max_count is not None and seen >= max_count:
                return
    except BrokerUnreachableError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        return
    if max_count is not None and seen < max_count:
        raise click.ClickException(
            f"only {seen} of {max_count} transitions on {topic} within {timeout or 0:g} s"
            + ("" if from_beginning else " (add --from-beginning to include earlier ones)")
        )
