"""Worker settings: one typed object, filled from `pql worker` flags or `PQL_*` environment
variables (click's auto_envvar_prefix), so Kubernetes can configure everything by env."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streams.model.spec import Model

# Every consumer's fetch long-poll wait, on any broker. With FETCH_MIN_BYTES
# (`streams.io.kafka_config`) a fetch is answered once the wait is over (or a backlog fills it):
# the embedded broker does that by itself for a multi-partition fetch; Kafka answers each
# record at once, and the stream of tiny fetches and responses cost its JVM more than a core
# of this 2-core machine and the worker seconds of latency (issue 13).
FETCH_WAIT_MS = 20


@dataclass(frozen=True)
class Settings:
    model: Model
    broker: str = "127.0.0.1:9092"
    input_topic: str = "product-events"
    output_topic: str = "pql-transitions"
    dlq_topic: str = "product-events-dlq"
    data_dir: Path = Path(".pql-data")
    web_port: int = 6066
    web_host: str = "0.0.0.0"
    # The URL other workers reach this one's web server at (the lookup API forwards to the owner
    # of an account's partition); default Faust's http://<hostname>:<web port>.
    advertised_url: str | None = None
    # Bearer token the /v1 lookup API requires (None: open).
    api_token: str | None = None
    # The live funnel metrics (`streams.app.funnel`): entry, conversion and its revenue.
    signup_event: str | None = None
    conversion_event: str | None = None
    revenue_property: str | None = None
    partitions: int = 4
    standby_replicas: int = 0
    app_id: str = ""  # default: pql-<model name>
    instance_id: str | None = None  # static group membership id (pod name)
    log_level: str = "info"
    session_timeout_s: float = 10.0
    # Event time that stream time is held back by (0 = exactly the backtest's watermark).
    watermark_grace_ms: int = 0
    # How the input is keyed: "any" (exact whatever the keying: every event that needs its
    # user's calls is routed by the user stage, in time order) or "user" (every call of a user
    # sits in one input partition, in time order: the ingest routes them itself, faster).
    input_key: str = "any"
    # An input partition quiet this long (wall clock) stops holding stream time back.
    idle_timeout_s: float = 3.0
    # While an input partition counts as idle, stream time moves only as far as it had reached
    # this long ago (wall clock): time for an idle partition that wakes up to say so.
    idle_hold_s: float = 1.0
    # Event time an input partition may run ahead of the slowest before the ingest pauses it.
    max_drift_ms: int = 600_000
    # Stream time advances an account only after it received nothing for this long (wall
    # clock). Marks cover every hop, so this only delays time-triggered transitions.
    advance_idle_s: float = 0.0
    # How long account state may stay unwritten (write-behind), or after how many events. With
    # 20k active accounts, 2,000-event flushes wrote ~0.55 states per event, 20,000-event ones
    # ~0.2; transitions do not wait for a flush (bench/README.md).
    flush_interval_s: float = 1.0
    flush_max_events: int = 20_000
    # At most how often the ingest marks every internal partition with stream time (what
    # releases held events and advances quiet accounts, and gives a quiet partition a record to
    # flush on): after every poll, but no more often than this.
    mark_interval_s: float = 0.05
    lag_interval_s: float = 5.0  # how often consumer lag is read from the broker
    # Unready this long while the broker answers and nothing is restored: the worker exits so
    # its supervisor restarts it (`streams.app.health`); 0: never.
    stall_timeout_s: float = 120.0
    # How often the model file is checked for a change (0: only on SIGHUP).
    model_poll_s: float = 1.0
    # Candidate models to run as shadows (`--shadow`), as loaded from their files.
    shadows: tuple[Model, ...] = ()
    # History older than the input topic's retention, for backfills (`--backfill-seed`).
    backfill_seed: Path | None = None
    # librdkafka-style security settings (security.protocol, sasl.*, ssl.ca.location), as
    # `streams.io.kafka_config.security_settings` builds them; empty for PLAINTEXT.
    security: dict[str, str] = field(default_factory=dict)
    embedded: bool | None = None  # None: detect from the broker's cluster id
    # Consumers' fetch long-poll wait. None: FETCH_WAIT_MS.
    fetch_wait_ms: int | None = None
    # RocksDB memory per partition database (each table has one per assigned partition).
    # Faust's defaults are a 2 GiB block cache and 3 x 64 MiB write buffers per database.
    rocksdb_block_cache_mb: int = 32
    rocksdb_write_buffer_mb: int = 8

    def rocksdb_options(self) -> dict[str, int]:
        """Faust's RocksDB store options (`Table(options=...)`): at most block cache + 2 write
        buffers of memory per partition database."""
        return {
            "block_cache_size": self.rocksdb_block_cache_mb * 1024 * 1024,
            "write_buffer_size": self.rocksdb_write_buffer_mb * 1024 * 1024,
            "max_write_buffer_number": 2,
        }

    @property
    def fetch_wait(self) -> int:
        return self.fetch_wait_ms if self.fetch_wait_ms is not None else FETCH_WAIT_MS

    @property
    def resolved_app_id(self) -> str:
        return self.app_id or f"pql-{self.model.name}"

    @property
    def by_user_topic(self) -> str:
        return f"{self.resolved_app_id}-by-user"

    @property
    def by_account_topic(self) -> str:
        return f"{self.resolved_app_id}-by-account"

    @property
    def models_topic(self) -> str:
        """The app's model history: announcements and reports
        (`streams.app.lifecycle.switchlog`)."""
        return f"{self.resolved_app_id}-models"

    @property
    def shadow_topic(self) -> str:
        """The shadow models' transitions (`streams.scoring.shadow`), each stamped with its
        model version."""
        return f"{self.output_topic}-shadow"

    @property
    def ingest_users_topic(self) -> str:
        """The ingest stage's local routing state (compacted, one partition per input one)."""
        return f"{self.resolved_app_id}-ingest-users"

    @property
    def state_app_id(self) -> str:
        """The Faust app (its consumer group and changelog prefix). The app id itself is the
        ingest stage's consumer group, so `pql lag --group <app id>` shows the input lag."""
        return f"{self.resolved_app_id}-state"

    def changelog_topic(self, table: str) -> str:
        return f"{self.state_app_id}-{table}-changelog"
