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
