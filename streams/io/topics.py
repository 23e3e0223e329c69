"""Create topics explicitly, with the partition count and configs we intend, before use.

Why: the embedded broker auto-creates a missing topic with 4 partitions on ANY metadata request
that names it (a producer, a consumer, a Faust table). A source topic created that way with the
wrong count crashes Faust tables (PartitionsMismatch) and sends keys to the wrong partitions, and
`create_partitions` is unsupported there. So every tool calls `ensure_topics` first, and an
existing topic with the wrong count is an error with instructions, not a silent surprise.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from streams.io.kafka_config import confluent_common


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as we need it. `replication_factor=-1` means the broker's default."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = -1


class BrokerUnreachableError(RuntimeError):
    """No Kafka broker answered at the bootstrap address."""

    def __init__(self, bootstrap: str, cause: object = None, message: str | None = None) -> None:
        self.bootstrap = bootstrap
        why = f" ({cause})" if cause else ""
        super().__init__(
            message
            or f"no Kafka broker answers at {bootstrap}{why}. Start one with `pql broker` "
            "(embedded, in memory) or pass the right address with --broker HOST:PORT."
        )


class BrokerAuthError(BrokerUnreachableError):
    """The broker answers, but the connection fails on credentials or TLS: retrying will not
    help, so this is raised at once instead of after the timeout."""

    def __init__(self, bootstrap: str, what: str, detail: str, advice: str) -> None:
        self.what = what
        super().__init__(
            bootstrap,
            message=f"{what} failed with the Kafka broker at {bootstrap}: {detail}. {advice}",
        )


_SASL_FAILURE = (
    "SASL authentication",
    "Check the user name and password (PQL_SASL_USERNAME, PQL_SASL_PASSWORD) and the "
    "mechanism (PQL_SASL_MECHANISM) the listener expects.",
)
# librdkafka's error codes for what retrying cannot fix, with what to tell the user.
_AUTH_FAILURES = {
    KafkaError._AUTHENTICATION: _SASL_FAILURE,
    KafkaError.SASL_AUTHENTICATION_FAILED: _SASL_FAILURE,
    KafkaError._SSL: (
        "TLS",
        "Check that PQL_SSL_CAFILE names the CA that signed the broker's certificate and that "
        "the certificate is valid for the address in --broker.",
    ),
}


def _detail(err: KafkaError) -> str:
    """librdkafka's message without its `protocol://host:port/id: ` prefix and timing suffix."""
    text = err.str()
    head, sep, rest = text.partition(": ")
    if sep and "://" in head:
        text = rest
    return text.split(" (after ")[0]


class TopicMismatchError(RuntimeError):
    """An existing topic has a different partition count than required."""

    def __init__(self, topic: str, expected: int, actual: int) -> None:
        self.topic = topic
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"topic {topic!r} has {actual} partitions but {expected} are required. It was "
            "probably created implicitly (the embedded broker auto-creates unknown topics with 4 "
            "partitions when anything asks for them) or with another --partitions value. "
            f"Either ask for {actual} partitions (e.g. `--partitions {actual}`), or delete the "
            "topic and let it be recreated: on the embedded broker restart `pql broker` (data "
            "lives in memory); on a real cluster "
            f"`kafka-topics --bootstrap-server ... --delete --topic {topic}`. Keyed data cannot "
            "simply be repartitioned in place."
        )


def admin_client(
    bootstrap: str, security: Mapping[str, Any] | None = None, *, quiet: bool = True
) -> AdminClient:
    """An AdminClient; `quiet` silences librdkafka's own connection-error logging, because
    callers turn an unreachable broker into one clear error instead."""
    conf = confluent_common(bootstrap, security)
    if quiet:
        conf["log_level"] = 0
    return AdminClient(conf)


def describe_cluster(
    bootstrap: str, security: Mapping[str, Any] | None = None, timeout: float = 10.0
) -> ClusterMetadata:
    """Metadata for all topics (naming none, so nothing is auto-created).

    Raises BrokerUnreachableError when no broker answers within `timeout`, and BrokerAuthError
    as soon as the broker refuses the credentials or the TLS handshake fails (librdkafka would
    otherwise retry those silently until the timeout)."""
    errors: list[KafkaError] = []
    conf = confluent_common(bootstrap, security)
    conf["log_level"] = 0  # reported below, once, as an error that says what to do
    conf["error_cb"] = errors.append
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.05, min(1.0, left)))
        except KafkaException as e:
            last = e
        admin.poll(0)  # serves error_cb
        for err in errors:
            if err.code() in _AUTH_FAILURES:
                what, advice = _AUTH_FAILURES[err.code()]
                raise BrokerAuthError(bootstrap, what, _detail(err), advice) from last
        if time.monotonic() >= deadline:
            raise BrokerUnreachableError(bootstrap, _short(last)) from last


def topic_partitions(
    bootstrap: str,
    topic: str,
    security: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> int | None:
    """The partition count of `topic`, or None if it does not exist (without creating it)."""
    md = describe_cluster(bootstrap, security, timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    security: Mapping[str, Any] | None = None,
    timeout: float = 15.0,
) -> list[str]:
    """Create the missing topics; check the partition count of the existing ones.

    Returns the names this call created. Safe to run concurrently from several processes: a
    topic someone else created in the meantime (TOPIC_ALREADY_EXISTS) is checked like any other
    existing topic. Raises TopicMismatchError on a wrong partition count and
    BrokerUnreachableError when no broker answers.
    """
    wanted = {s.name: s for s in specs}
    if not wanted:
        return []
    existing = _counts(describe_cluster(bootstrap, security, timeout))  # fails fast on auth
    admin = admin_client(bootstrap, security)
    missing = [s for name, s in wanted.items() if name not in existing]
    created: list[str] = []
    raced = False
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=dict(s.config),
                )
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout)
                created.append(name)
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"could not create topic {name!r}: {err.str()}") from e
                raced = True
        if raced:
            existing = _counts(describe_cluster(bootstrap, security, timeout))
    for name, spec in wanted.items():
        if name in created:
            continue
        actual = existing.get(name)
        if actual is not None and actual != spec.partitions:
            raise TopicMismatchError(name, spec.partitions, actual)
    return created


def _counts(md: ClusterMetadata) -> dict[str, int]:
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def _short(e: KafkaException) -> str:
    err = e.args[0] if e.args else None
    return err.str() if isinstance(err, KafkaError) else str(e)
