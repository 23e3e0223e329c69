"""`pql worker`: every option is also a `PQL_<OPTION>` environment variable (Kubernetes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.app.settings import Settings
from streams.io.kafka_config import kafka_options
from streams.model.errors import ModelError
from streams.model.loader import load_model
from streams.model.spec import Model


def _env(name: str) -> str:
    return f"PQL_{name}"


@click.command()
@kafka_options
@click.option(
    "--model",
    "model_path",
    envvar=_env("MODEL"),
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="PQL model YAML.",
)
@click.option(
    "--input-topic", envvar=_env("INPUT_TOPIC"), default="product-events", show_default=True
)
@click.option(
    "--output-topic", envvar=_env("OUTPUT_TOPIC"), default="pql-transitions", show_default=True
)
@click.option(
    "--dlq-topic", envvar=_env("DLQ_TOPIC"), default="product-events-dlq", show_default=True
)
@click.option(
    "--data-dir",
    envvar=_env("DATA_DIR"),
    default=".pql-data",
    show_default=True,
    type=click.Path(file_okay=False),
)
@click.option("--web-port", envvar=_env("WEB_PORT"), default=6066, show_default=True, type=int)
@click.option("--web-host", envvar=_env("WEB_HOST"), default="0.0.0.0", show_default=True)
@click.option(
    "--advertised-url",
    envvar=_env("ADVERTISED_URL"),
    default=None,
    help="URL the other workers reach this one's web port at (the lookup API forwards to an "
    "account's owner). [default: http://<hostname>:<web port>]",
)
@click.option(
    "--signup-event",
    envvar=_env("SIGNUP_EVENT"),
    default=None,
    help="Live funnel metrics: the track event that enters an account (default: its first).",
)
@click.option(
    "--conversion-event",
    envvar=_env("CONVERSION_EVENT"),
    default=None,
    help='Live funnel metrics: the track event that means "converted".',
)
@click.option(
    "--revenue-property",
    envvar=_env("REVENUE_PROPERTY"),
    default=None,
    help="Live funnel metrics: the conversion event's revenue property (e.g. mrr).",
)
@click.option(
    "--api-token",
    envvar=_env("API_TOKEN"),
    default=None,
    help="Bearer token the /v1 lookup API requires (default: open).",
)
@click.option(
    "--partitions",
    envvar=_env("PARTITIONS"),
    default=4,
    show_default=True,
    type=int,
    help="Partitions of the topics it creates (bounds the number of workers).",
)
@click.option("--standby-replicas", envvar=_env("STANDBY_REPLICAS"), default=0, type=int)
@click.option(
    "--app-id",
    envvar=_env("APP_ID"),
    default="",
    help="Consumer group and topic prefix [default: pql-<model name>].",
)
@click.option(
    "--instance-id",
    envvar=_env("INSTANCE_ID"),
    default=None,
    help="Static group membership id (use the pod name).",
)
@click.option(
    "--session-timeout",
    envvar=_env("SESSION_TIMEOUT"),
    default=10.0,
    type=float,
    show_default=True,
    help="Consumer group session timeout, seconds.",
)
@click.option(
    "--watermark-grace",
    envvar=_env("WATERMARK_GRACE"),
    default=0.0,
    type=float,
    show_default=True,
    help="Event-time seconds stream time is held back by.",
)
@click.option(
    "--input-key",
    envvar=_env("INPUT_KEY"),
    default="any",
    type=click.Choice(["any", "user"]),
    show_default=True,
    help="How the input topic is keyed. any: exact whatever the keying (round robin, by "
    "device, by user...). user: every call of a user is in one partition (keyed by userId, or "
    "by account for single-account users), so the ingest routes them itself: faster.",
)
@click.option(
    "--idle-timeout",
    envvar=_env("IDLE_TIMEOUT"),
    default=3.0,
    type=click.FloatRange(min=0.0),
    show_default=True,
    help="Wall seconds after which a quiet input partition stops holding stream time back "
    "(events are applied once every active input partition has moved past them).",
)
@click.option(
    "--max-drift",
    envvar=_env("MAX_DRIFT"),
    default=600.0,
    type=click.FloatRange(min=0.0),
    show_default=True,
    help="Event-time seconds an input partition may run ahead of the slowest one before it is "
    "paused (bounds what is held while one partition catches up).",
)
@click.option(
    "--advance-idle",
    envvar=_env("ADVANCE_IDLE"),
    default=0.0,
    type=float,
    show_default=True,
    help="Wall seconds an account must be idle before stream time advances it (extra delay "
    "for time-triggered transitions; not needed for exactness).",
)
@click.option(
    "--flush-interval",
    envvar=_env("FLUSH_INTERVAL"),
    default=1.0,
    type=click.FloatRange(min=0.01),
    show_default=True,
    help="Seconds account state may stay unwritten (write-behind) before a flush; records are "
    "acked, so their input offsets committed, only after it. Transitions never wait for it.",
)
@click.option(
    "--flush-max-events",
    envvar=_env("FLUSH_MAX_EVENTS"),
    default=20_000,
    type=click.IntRange(min=1),
    show_default=True,
    help="...or after this many events. Larger flushes write each busy account less often.",
)
@click.option(
    "--fetch-wait-ms",
    envvar=_env("FETCH_WAIT_MS"),
    default=None,
    type=click.IntRange(min=1),
    help="Consumers' fetch long-poll wait, ms; a fetch is answered after it unless 1 MiB "
    "is there first [default: 20].",
)
@click.option(
    "--rocksdb-block-cache-mb",
    envvar=_env("ROCKSDB_BLOCK_CACHE_MB"),
    default=32,
    type=click.IntRange(min=1),
    show_default=True,
    help="RocksDB block cache per partition database (two tables x assigned partitions).",
)
@click.option(
    "--rocksdb-write-buffer-mb",
    envvar=_env("ROCKSDB_WRITE_BUFFER_MB"),
    default=8,
    type=click.IntRange(min=1),
    show_default=True,
    help="RocksDB write buffer per partition database (at most two are kept).",
)
@click.option(
    "--stall-timeout",
    envvar=_env("STALL_TIMEOUT"),
    default=120.0,
    type=click.FloatRange(min=0.0),
    show_default=True,
    help="Seconds the worker may stay unready while the broker answers and no table is being "
    "restored; then it logs its tasks' stacks and exits 1 for its supervisor to restart it "
    "(0: never).",
)
@click.option(
    "--model-poll",
    envvar=_env("MODEL_POLL"),
    default=1.0,
    type=click.FloatRange(min=0.0),
    show_default=True,
    help="Seconds between checks of the model file for a change (a ConfigMap update swaps a "
    "symlink); a changed, newer, compatible model is switched to live. 0: only on SIGHUP.",
)
@click.option(
    "--shadow",
    "shadow_paths",
    envvar=_env("SHADOW"),
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A candidate model to run as a shadow beside the live one (same signals, a later "
    "version): it decides every account from an agreed stream time on, its transitions go to "
    "<output topic>-shadow; watched like --model. Making it the --model file promotes it. "
    "Repeatable (PQL_SHADOW: paths separated by spaces).",
)
@click.option(
    "--backfill-seed",
    "backfill_seed",
    envvar=_env("BACKFILL_SEED"),
    type=click.Path(exists=True, dir_okay=False),
    help="History older than the input topic's retention (JSONL, optionally gzipped: an "
    "export of the same events): a backfill for a model with other signals reads it for the "
    "events before the topic's first retained one, so the new signals are whole, not partial.",
)
@click.option("--log-level", envvar=_env("LOG_LEVEL"), default="info", show_default=True)
def worker(
    model_path: str,
    broker: str,
    input_topic: str,
    output_topic: str,
    dlq_topic: str,
    data_dir: str,
    web_port: int,
    web_host: str,
    advertised_url: str | None,
    signup_event: str | None,
    conversion_event: str | None,
    revenue_property: str | None,
    api_token: str | None,
    partitions: int,
    standby_replicas: int,
    app_id: str,
    instance_id: str | None,
    session_timeout: float,
    watermark_grace: float,
    input_key: str,
    idle_timeout: float,
    max_drift: float,
    advance_idle: float,
    flush_interval: float,
    flush_max_events: int,
    fetch_wait_ms: int | None,
    rocksdb_block_cache_mb: int,
    rocksdb_write_buffer_mb: int,
    stall_timeout: float,
    model_poll: float,
    shadow_paths: tuple[str, ...],
    backfill_seed: str | None,
    log_level: str,
    security: dict[str, str] | None,
) -> None:
    """Run the streaming worker: product events in, PQL transitions out."""
    model = _load(model_path)
    shadows = tuple(_load(path) for path in shadow_paths)
    settings = Settings(
        model=model,
        broker=broker,
        input_topic=input_topic,
        output_topic=output_topic,
        dlq_topic=dlq_topic,
        data_dir=Path(data_dir),
        web_port=web_port,
        web_host=web_host,
        advertised_url=advertised_url or None,
        api_token=api_token or None,
        signup_event=signup_event or None,
        conversion_event=conversion_event or None,
        revenue_property=revenue_property or None,
        partitions=partitions,
        standby_replicas=standby_replicas,
        app_id=app_id,
        instance_id=instance_id,
        log_level=log_level,
        session_timeout_s=session_timeout,
        watermark_grace_ms=int(watermark_grace * 1000),
        input_key=input_key,
        idle_timeout_s=idle_timeout,
        max_drift_ms=int(max_drift * 1000),
        advance_idle_s=advance_idle,
        flush_interval_s=flush_interval,
        flush_max_events=flush_max_events,
        fetch_wait_ms=fetch_wait_ms,
        rocksdb_block_cache_mb=rocksdb_block_cache_mb,
        rocksdb_write_buffer_mb=rocksdb_write_buffer_mb,
        stall_timeout_s=stall_timeout,
        model_poll_s=model_poll,
        shadows=shadows,
        backfill_seed=Path(backfill_seed) if backfill_seed else None,
        security=security or {},
    )
    from streams.app.run import run_worker
    from streams.io.topics import BrokerUnreachableError, TopicMismatchError

    try:
        code = run_worker(settings)
    except (BrokerUnreachableError, TopicMismatchError) as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


def _load(path: str) -> Model:
    try:
        return load_model(path)
    except ModelError as exc:
        raise click.ClickException(
            f"refusing to start: {path} is not a valid model:\n{exc}\n"
            f"Fix it, then check with `pql model check {path}`."
        ) from exc
