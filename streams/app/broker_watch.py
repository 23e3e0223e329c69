"""Is the Kafka broker there? The worker's readiness follows the answer.

Faust and aiokafka keep retrying a broker that went away (and pick up where they were when it
comes back), but nothing in them says "the broker is gone": readiness stayed 200 through an
outage. A thread of the worker sends one metadata request every `interval_s`; after `misses`
unanswered ones in a row the broker counts as lost (`pql_broker_reachable` 0, /readyz 503, one
warning), and the first answer brings it back (one info line saying how long it was gone).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.io.kafka_config import confluent_common

log = logging.getLogger(__name__)


class BrokerWatch:
    def __init__(
        self,
        bootstrap: str,
        security: Mapping[str, Any] | None,
        on_change: Callable[[bool], None],
        interval_s: float = 2.0,
        misses: int = 2,
    ) -> None:
        self.bootstrap = bootstrap
        self.interval_s = interval_s
        self.misses = misses
        self.reachable = True
        self._on_change = on_change
        conf = confluent_common(bootstrap, security)
        conf["log_level"] = 0  # the outage is reported once, below, not at every retry
        self._admin = AdminClient(conf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)
        self._lost_at = 0.0
        self._last_error = ""

    def start(self) -> None:
        self._on_change(True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s * 2 + 1)

    def check(self) -> bool:
        """One metadata request: did the broker answer within `interval_s`?"""
        try:
            self._admin.list_topics(timeout=self.interval_s)
        except KafkaException as e:
            self._last_error = e.args[0].str() if e.args else str(e)
            return False
        return True

    def _run(self) -> None:
        missed = 0
        while not self._stop.wait(self.interval_s):
            if self.check():
                missed = 0
                if not self.reachable:
                    self.reachable = True
                    self._on_change(True)
                    log.info(
                        "the Kafka broker at %s answers again (gone %.0f s)",
                        self.bootstrap,
                        time.monotonic() - self._lost_at,
                    )
                continue
            missed += 1
            if missed >= self.misses and self.reachable:
                self.reachable = False
                self._lost_at = time.monotonic() - missed * self.interval_s
                self._on_change(False)
                log.warning(
                    "lost the Kafka broker at %s (%s): not ready until it answers again; "
                    "the worker keeps retrying and resumes from its committed offsets",
                    self.bootstrap,
                    self._last_error,
                )
