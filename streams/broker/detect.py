"""Tell whether a bootstrap address is our embedded broker (Tansu).

The worker needs to know: on Tansu it must apply workarounds (producer batch size 1 for correct
changelog recovery, short session timeouts, no exactly-once). Tansu reports a fixed cluster id.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

TANSU_CLUSTER_ID = "tansu_cluster"


def cluster_id(bootstrap: str, timeout: float = 5, security: dict[str, str] | None = None) -> str:
    """The cluster id the broker at `bootstrap` reports; raises KafkaException if unreachable.

    Lists all topics, which (unlike naming one) never auto-creates a topic.
    """
    from streams.io.kafka_config import confluent_common

    conf = confluent_common(bootstrap, security)
    conf["log_level"] = 0  # an unreachable broker is an answer here, not something to log
    md = AdminClient(conf).list_topics(timeout=timeout)
    return str(md.cluster_id)


def is_embedded_broker(
    bootstrap: str, timeout: float = 5, security: dict[str, str] | None = None
) -> bool:
    """True if `bootstrap` answers as Tansu; False if it is another Kafka or does not answer."""
    try:
        return cluster_id(bootstrap, timeout, security) == TANSU_CLUSTER_ID
    except KafkaException:
        return False
