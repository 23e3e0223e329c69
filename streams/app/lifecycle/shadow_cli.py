"""`pql shadow list|stop`: the shadow models of a running app, from its control topic
`<app id>-models` (`streams.app.lifecycle.switchlog`)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import click
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams.app.lifecycle.switchlog import SHADOW, SwitchLog, stop
from streams.io.kafka_config import consumer_config, kafka_options, producer_config
from streams.io.topics import topic_partitions
from streams.scoring.transitions import iso_ms


def read_switchlog(
    broker: str, app_id: str, security: Mapping[str, Any] | None, timeout_s: float = 30.0
) -> SwitchLog:
    """The app's model history, read from its control topic to the end."""
    partitions = topic_partitions(broker, f"{app_id}-by-account", security)
    if not partitions:
        raise click.ClickException(
            f"no app {app_id!r} at {broker} (no topic {app_id}-by-account): check --app-id, "
            "the worker's PQL_APP_ID (default pql-<model name>)"
        )
    topic = f"{app_id}-models"
    log = SwitchLog(partitions)
    consumer = Consumer(consumer_config(broker, None, security))
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        next_offset = low
        deadline = time.monotonic() + timeout_s
        while next_offset < high:
            if time.monotonic() > deadline:
                raise click.ClickException(f"reading {topic} took over {timeout_s:.0f} s")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            next_offset = (msg.offset() or 0) + 1
            value = msg.value()
            if value:
                log.apply(orjson.loads(value))
    finally:
        consumer.close()
    return log


@click.group("shadow")
def shadow() -> None:
    """Shadow models of a running app (README "Changing your model")."""


@shadow.command("list")
@kafka_options
@click.option(
    "--app-id", envvar="PQL_APP_ID", required=True, help="The worker's app id (env PQL_APP_ID)."
)
def list_shadows(broker: str, security: dict[str, str] | None, app_id: str) -> None:
    """The live model and the shadows running beside it."""
    log = read_switchlog(broker, app_id, security)
    cur = log.current
    if cur is None:
        raise click.ClickException(f"app {app_id!r} has no model yet")
    click.echo(f"live: {cur.model.name} v{cur.model.version} from {iso_ms(cur.at_ms)}")
    for sh in log.running_shadows():
        click.echo(f"shadow: {sh.model.name} v{sh.model.version} from {iso_ms(sh.at_ms)}")
    for v in sorted(log.stopped):
        click.echo(f"stopped: v{v}")


@shadow.command("stop")
@kafka_options
@click.option(
    "--app-id", envvar="PQL_APP_ID", required=True, help="The worker's app id (env PQL_APP_ID)."
)
@click.argument("version", type=int)
def stop_shadow(broker: str, security: dict[str, str] | None, app_id: str, version: int) -> None:
    """Stop the shadow of model VERSION: every worker stops running it when it reads this
    (remove it from the workers' --shadow files too; a stopped version is never run again)."""
    log = read_switchlog(broker, app_id, security)
    running = {sh.model.version: sh for sh in log.running_shadows()}
    sh = running.get(version)
    if sh is None:
        names = ", ".join(f"v{v}" for v in sorted(running)) or "none"
        raise click.ClickException(
            f"no shadow of version {version} runs in {app_id!r} (running: {names}); "
            f"see `pql shadow list --app-id {app_id}`"
        )
    producer = Producer(producer_config(broker, security, linger_ms=0))
    by = f"pql shadow stop@{socket.gethostname()}:{os.getpid()}"
    record = stop(version, f"{SHADOW}:{sh.model.fingerprint}", by)
    producer.produce(f"{app_id}-models", orjson.dumps(record), key=b"stop")
    if producer.flush(10):
        raise click.ClickException(f"the stop record was not delivered to {app_id}-models")
    click.echo(f"stopped the shadow {sh.model.name} v{version} (running since {iso_ms(sh.at_ms)})")
