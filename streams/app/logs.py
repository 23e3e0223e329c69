"""Keep a broker outage from flooding the worker's log.

While the broker is gone aiokafka logs the same few errors at every retry (~100 ms apart), tens
of lines a second. `limit_repeats` lets the first of each kind through, then at most one per
`window_s` with how many were held back; the worker's own broker watch says once that the
broker is lost and once that it is back (`streams.app.broker_watch`).
"""

from __future__ import annotations

import importlib
import logging
import time

# aiokafka's loggers that log per retry (a filter on a logger does not apply to its children,
# so each is named; `aiokafka.client` logs as plain "aiokafka"). Their modules are imported
# here so the loggers exist to be filtered.
NOISY = {
    "aiokafka": "aiokafka.client",
    "aiokafka.conn": "aiokafka.conn",
    "aiokafka.consumer.fetcher": "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator": "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender": "aiokafka.producer.sender",
}


class RepeatLimiter(logging.Filter):
    """Passes a message (logger, level, format string) at most once per `window_s`; the next
    one after a quiet window says how many were dropped."""

    def __init__(self, window_s: float = 30.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        dropped = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [and {dropped} more like this in {self.window_s:.0f} s]"
        return True


def limit_repeats(window_s: float = 30.0) -> None:
    limiter = RepeatLimiter(window_s)
    for name, module in NOISY.items():
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - another aiokafka layout: nothing to quiet
            continue
        logging.getLogger(name).addFilter(limiter)
