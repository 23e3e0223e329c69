"""The Faust app's settings, from the worker's `Settings`: broker, store, web server, topics,
consumer, and the credentials for a secured broker."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from streams.app.restore import RestoringTable
from streams.app.settings import Settings


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The Faust app's settings from ours (the worker builds `faust.App` with them)."""
    conf: dict[str, Any] = {
        "broker": f"kafka://{settings.broker}",
        "store": "rocksdb://",
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_in_thread": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "table_standby_replicas": settings.standby_replicas,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "broker_commit_interval": 1.0,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": "at_least_once",
        # Records are acked only after a flush (write-behind); the rest is simply re-read by the
        # next owner. Waiting for them to be acked on stop/rebalance would wait forever.
        "stream_wait_empty": False,
        "autodiscover": False,
        "loghandlers": [],
        # Tables restore new partitions with librdkafka before Faust's recovery runs.
        "Table": RestoringTable,
    }
    if settings.instance_id:
        conf["consumer_group_instance_id"] = settings.instance_id
    if settings.advertised_url:
        conf["canonical_url"] = settings.advertised_url
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    return conf


def _credentials(settings: Settings) -> Any:
    sec = settings.security
    protocol = sec.get("security.protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = (
        ssl.create_default_context(cafile=sec.get("ssl.ca.location")) if "SSL" in protocol else None
    )
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=sec.get("sasl.username"),
            password=sec.get("sasl.password"),
            mechanism=sec.get("sasl.mechanism", "PLAIN"),
            ssl_context=context,
        )
    return faust.SSLCredentials(context)
