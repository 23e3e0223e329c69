"""What the ingest stage needs to run (`IngestConfig`, picklable: handed to its process), what
it reports (`IngestStats`), its limits, and Kafka's default partitioner, which the internal
topics' partitions follow."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from streams.app.settings import Settings

POLL_BATCH = 5_000
POLL_TIMEOUT_S = 0.05  # longest wait for a first record (then marks and alignment run)
SETTLE_WARN_S = 30.0  # how often a poll waiting for its forwarded records to be delivered says so


@functools.lru_cache(maxsize=1 << 18)
def partition_of(key: str, partitions: int) -> int:
    """Kafka's default (Java, aiokafka) partitioner: what Faust's table partitions follow.
    Cached: aiokafka's murmur2 is pure Python (~4 µs), and hot accounts repeat."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class IngestConfig:
    """What the ingest stage needs of the worker's settings (picklable: it is handed to the
    ingest process; `Settings` holds the compiled model, which is not)."""

    broker: str
    security: dict[str, str] | None
    group: str  # the consumer group: the app id
    instance_id: str | None
    session_timeout_ms: int
    fetch_wait_ms: int | None
    partitions: int  # of the internal topics
    input_topic: str
    dlq_topic: str
    by_account_topic: str
    by_user_topic: str
    users_topic: str  # the ingest stage's local routing state
    trait_keys: frozenset[str]  # user traits the model reads
    mark_interval_s: float = 0.05  # a partition without events gets the progress this often
    linger_s: float = 0.02  # a poll waits this long after its first record for more
    # Route locally (per input partition) the users whose calls it carried: only exact when
    # each user's calls are in one input partition (`--input-key user`).
    local_routing: bool = False
    idle_s: float = 3.0  # an input partition quiet this long stops holding stream time
    max_drift_ms: int = 600_000  # pause an input partition this far ahead of the slowest

    @classmethod
    def from_settings(cls, settings: Settings, trait_keys: frozenset[str]) -> IngestConfig:
        return cls(
            broker=settings.broker,
            security=settings.security or None,
            group=settings.resolved_app_id,
            instance_id=settings.instance_id,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            fetch_wait_ms=settings.fetch_wait,
            partitions=settings.partitions,
            input_topic=settings.input_topic,
            dlq_topic=settings.dlq_topic,
            by_account_topic=settings.by_account_topic,
            by_user_topic=settings.by_user_topic,
            users_topic=settings.ingest_users_topic,
            trait_keys=trait_keys,
            mark_interval_s=settings.mark_interval_s,
            local_routing=settings.input_key == "user",
            idle_s=settings.idle_timeout_s,
            max_drift_ms=settings.max_drift_ms,
        )


@dataclass
class IngestStats:
    """What the ingest stage has done, cumulative (so the latest copy supersedes any earlier
    one): the worker turns it into its metrics."""

    consumed: int = 0  # input records read
    rejected: dict[str, int] = field(default_factory=dict)  # by reason; each one dead-lettered
    committed_at: float = 0.0  # Unix time of the last input offset commit
    assigned: frozenset[int] = frozenset()  # input partitions read
    adjusted: dict[str, int] = field(default_factory=dict)  # timestamps of wrong clocks, by how
    paused: frozenset[int] = frozenset()  # input partitions paused for running ahead
