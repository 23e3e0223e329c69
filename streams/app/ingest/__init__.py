"""The ingest stage: reads the input topic with librdkafka in a child process of the worker,
parses and routes each event, and writes frames into the internal topics.

    config.py   what it needs (IngestConfig), what it reports (IngestStats), its limits,
                Kafka's default partitioner
    stage.py    the stage itself (Ingest): poll, route, frames with stream time, alignment
    local.py    its local routing state (--input-key user)
    process.py  the child process and the worker's handle on it (IngestProcess)
"""

from streams.app.ingest.config import (
    POLL_BATCH,
    IngestConfig,
    IngestStats,
    partition_of,
)
from streams.app.ingest.stage import Ingest

__all__ = [
    "POLL_BATCH",
    "Ingest",
    "IngestConfig",
    "IngestStats",
    "partition_of",
]
