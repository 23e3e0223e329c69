"""The repeat limiter that keeps a broker outage from flooding the worker's log."""

from __future__ import annotations

import logging

import pytest

from streams.app import logs
from streams.app.logs import RepeatLimiter


def _record(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_first_passes_repeats_are_held_then_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    limiter = RepeatLimiter(window_s=30)
    assert limiter.filter(_record("Unable connect to node with id %s", 1))
    for i in range(50):
        now[0] += 0.1
        assert not limiter.filter(_record("Unable connect to node with id %s", i))
    # another message, or the same from another logger, is not held back
    assert limiter.filter(_record("Failed fetch messages from %s", 1))
    assert limiter.filter(_record("Unable connect to node with id %s", 1, name="aiokafka.client"))
    now[0] = 131.0
    later = _record("Unable connect to node with id %s", 1)
    assert limiter.filter(later)
    assert later.getMessage() == "Unable connect to node with id 1 [and 50 more like this in 30 s]"
    now[0] += 1
    assert not limiter.filter(_record("Unable connect to node with id %s", 1))


def test_limit_repeats_quiets_the_loggers_aiokafka_really_uses() -> None:
    """aiokafka's client logs "Unable connect to node ..." as the plain `aiokafka` logger (not
    `aiokafka.client`): the filter must sit there, or an outage floods the log (it did: 900
    lines in 20 s)."""
    import aiokafka.client
    import aiokafka.conn

    try:
        logs.limit_repeats(window_s=30)
        assert any(isinstance(f, RepeatLimiter) for f in aiokafka.conn.log.filters)
        client = aiokafka.client.log
        first = _record("Unable connect to node with id %s: %s", 1, "refused", name=client.name)
        again = _record("Unable connect to node with id %s: %s", 1, "refused", name=client.name)
        assert client.filter(first)
        assert not client.filter(again)
    finally:
        for name in logs.NOISY:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, RepeatLimiter)]:
                logger.removeFilter(f)
