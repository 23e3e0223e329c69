"""The one place that builds confluent-kafka (librdkafka) client settings.

Why one place: the partitioner must match Kafka's Java client and aiokafka (Faust's driver), or
records keyed by account land on a different partition than the worker's tables expect; and the
embedded broker needs short session timeouts. Every confluent client in this repo gets its
settings from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# librdkafka namespaces for authentication and encryption, e.g. security.protocol,
# sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ssl.certificate.location.
_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")

# Java/aiokafka-compatible: murmur2 of the key; unkeyed records spread randomly. librdkafka's
# default (consistent_random, CRC32) puts the same key on a different partition.
PARTITIONER = "murmur2_random"

# A fetch with a wait (`consumer_config(fetch_wait_ms=...)`) is answered when the wait is over or
# this much data is there: the broker batches a wait's worth of records per response instead of
# answering every record at once (see streams.app.settings.FETCH_WAIT_MS).
FETCH_MIN_BYTES = 1 << 20

# JoinGroup on the embedded broker answers only after session_timeout/2; a few seconds keeps
# joins quick there and is still safe on a real cluster for short-lived tools.
DEFAULT_SESSION_TIMEOUT_MS = 6000


def confluent_common(bootstrap: str, security: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Settings every client shares: bootstrap servers plus the SASL/TLS keys from `security`.

    `security` holds librdkafka keys (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    `sasl.password`, `ssl.ca.location`, ...). Anything outside those namespaces is rejected so a
    typo or a misplaced setting fails loudly instead of being silently ignored.
    """
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
    for key, value in (security or {}).items():
        if not key.startswith(_SECURITY_PREFIXES):
            raise ValueError(
                f"unsupported security setting {key!r}: only librdkafka keys starting with "
                f"{', '.join(_SECURITY_PREFIXES)} belong here"
            )
        if value is not None:
            conf[key] = value
    return conf


def producer_config(
    bootstrap: str,
    security: Mapping[str, Any] | None = None,
    *,
    linger_ms: int = 5,
    batch_size: int = 256 * 1024,
    acks: str = "all",
) -> dict[str, Any]:
    """Producer settings; ALWAYS murmur2 partitioning (see PARTITIONER).

    Idempotence stays off: outputs are made idempotent by id, and the embedded broker's
    transaction support is not trustworthy; ordering comes from one request in flight.
    """
    conf = confluent_common(bootstrap, security)
    conf.update(
        {
            "partitioner": PARTITIONER,
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            "acks": acks,
            "enable.idempotence": False,
            # Without idempotence, a retried batch could land after the next one: one request
            # in flight per broker keeps each partition's records in produce order (changelog
            # versions, an account's transitions, the ingest's forwarded batches).
            "max.in.flight.requests.per.connection": 1,
            "compression.type": "none",
        }
    )
    return conf


def consumer_config(
    bootstrap: str,
    group: str | None,
    security: Mapping[str, Any] | None = None,
    *,
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    auto_offset_reset: str = "earliest",
    enable_auto_commit: bool = False,
    fetch_wait_ms: int | None = None,
) -> dict[str, Any]:
    """Consumer settings. `group=None` is for assign()-only readers (e.g. `pql tail`) that
    neither join a group nor commit offsets. `fetch_wait_ms`: the fetch long-poll wait, which
    then also bounds how long the broker holds a fetch (FETCH_MIN_BYTES); librdkafka's defaults
    when None."""
    conf = confluent_common(bootstrap, security)
    conf.update(
        {
            "group.id": group if group is not None else "pql-assign-only",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(500, session_timeout_ms // 3),
            "auto.offset.reset": auto_offset_reset,
            "enable.auto.commit": enable_auto_commit if group is not None else False,
            "enable.auto.offset.store": group is not None and enable_auto_commit,
            "enable.partition.eof": False,
        }
    )
    if fetch_wait_ms is not None:
        conf["fetch.wait.max.ms"] = fetch_wait_ms
        conf["fetch.min.bytes"] = FETCH_MIN_BYTES
    return conf


def security_settings(
    protocol: str = "PLAINTEXT",
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_cafile: str | None = None,
) -> dict[str, str] | None:
    """The `security` mapping for `confluent_common` from CLI-style values; None for PLAINTEXT
    with nothing else set (the embedded broker and local clusters)."""
    out: dict[str, str] = {}
    if protocol and protocol.upper() != "PLAINTEXT":
        out["security.protocol"] = protocol.upper()
    for key, value in (
        ("sasl.mechanism", sasl_mechanism),
        ("sasl.username", sasl_username),
        ("sasl.password", sasl_password),
        ("ssl.ca.location", ssl_cafile),
    ):
        if value:
            out[key] = value
    return out or None


def kafka_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Click options shared by the client commands (`--broker` and security), each also a
    `PQL_*` environment variable like `pql worker`'s. The command receives `broker: str` and
    `security: dict | None`."""
    return kafka_options_env("PQL_")(command)


def kafka_options_env(prefix: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`kafka_options` whose variables are `<prefix>BROKER`... first, then `PQL_BROKER`...
    (`pql notify`: PQL_NOTIFY_BROKER, falling back to PQL_BROKER)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        return _kafka_options(command, prefix)

    return decorate


def _kafka_options(command: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    import functools

    import click

    def env(name: str) -> list[str]:
        return [f"{prefix}{name}"] if prefix == "PQL_" else [f"{prefix}{name}", f"PQL_{name}"]

    @click.option(
        "--broker",
        envvar=env("BROKER"),
        default="127.0.0.1:9092",
        show_default=True,
        help=f"Kafka bootstrap address HOST:PORT (env {' or '.join(env('BROKER'))}).",
    )
    @click.option(
        "--security-protocol",
        envvar=env("SECURITY_PROTOCOL"),
        default="PLAINTEXT",
        show_default=True,
        type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
    )
    @click.option("--sasl-mechanism", envvar=env("SASL_MECHANISM"), default=None)
    @click.option("--sasl-username", envvar=env("SASL_USERNAME"), default=None)
    @click.option("--sasl-password", envvar=env("SASL_PASSWORD"), default=None)
    @click.option("--ssl-cafile", envvar=env("SSL_CAFILE"), default=None)
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        security_protocol: str,
        sasl_mechanism: str | None,
        sasl_username: str | None,
        sasl_password: str | None,
        ssl_cafile: str | None,
        **kwargs: Any,
    ) -> Any:
        kwargs["security"] = security_settings(
            security_protocol, sasl_mechanism, sasl_username, sasl_password, ssl_cafile
        )
        return command(*args, **kwargs)

    return wrapper
