"""Tell whether a bootstrap address is our embedded broker (Tansu).

The worker needs to know: on Tansu it must apply workarounds (producer batch size 1 for correct
changelog recovery, short session timeouts, no exactly-once). Tansu reports a fixed cluster id.
"""

from __future__ import annotations

import logging
import time

from streams.io.topics import BrokerAuthError, BrokerUnreachableError, describe_cluster

TANSU_CLUSTER_ID = "tansu_cluster"


def cluster_id(bootstrap: str, timeout: float = 5, security: dict[str, str] | None = None) -> str:
    """The cluster id the broker at `bootstrap` reports. Raises BrokerUnreachableError if none
    answers within `timeout`, BrokerAuthError at once if credentials or TLS fail.

    Lists all topics, which (unlike naming one) never auto-creates a topic.
    """
    return str(describe_cluster(bootstrap, security, timeout).cluster_id)


def is_embedded_broker(
    bootstrap: str, timeout: float = 5, security: dict[str, str] | None = None
) -> bool:
    """True if `bootstrap` answers as Tansu; False if it is another Kafka or does not answer
    (raises BrokerAuthError: a refused login is an answer that needs fixing, not a "no")."""
    try:
        return cluster_id(bootstrap, timeout, security) == TANSU_CLUSTER_ID
    except BrokerAuthError:
        raise
    except BrokerUnreachableError:
        return False


def wait_for_broker(
    bootstrap: str,
    security: dict[str, str] | None = None,
    log: logging.Logger | None = None,
    retry_s: float = 5.0,
    timeout: float | None = None,
) -> str:
    """The cluster id, once the broker at `bootstrap` answers: a worker started before its
    broker (or while it restarts) waits for it, saying so every `retry_s`, instead of starting
    with the wrong idea of which broker it talks to. BrokerAuthError is raised at once; after
    `timeout` seconds (None: no limit), the last BrokerUnreachableError."""
    started = time.monotonic()
    while True:
        try:
            return cluster_id(bootstrap, retry_s, security)
        except BrokerAuthError:
            raise
        except BrokerUnreachableError as e:
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise
            if log is not None:
                log.warning(
                    "waiting for the Kafka broker at %s (%.0f s so far): %s; the worker "
                    "starts when it answers",
                    bootstrap,
                    waited,
                    e,
                )
