"""Score decay live (issue 15 item 3): examples/decaying.yaml (counts with a half-life) over 40
simulated days of 40 accounts, as simulated (tracks without the account go through the user
stage), through a live worker gives exactly `pql backtest`'s transitions: the same decayed
values, and the same transitions that decay alone caused (trigger "time", at bucket boundaries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    WorkerNames,
    Workers,
    assert_same_as_backtest,
    backtest,
    collect,
    produce,
    schema_validator,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "decaying.yaml"
DECAYED = {"messages", "invites", "pricing_views"}


def test_worker_decay(broker: Any, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    events = write_jsonl(tmp_path / "events.jsonl", generate(accounts=40, days=40, seed=11))
    expected = backtest(MODEL, events, out_dir=tmp_path)
    # The history exercises decay: transitions that time alone caused, reading decayed values.
    by_decay = [
        t
        for t in expected
        if t["trigger"] == "time" and (DECAYED | {"score"}) & set(t["condition"]["values"])
    ]
    assert len(by_decay) >= 10, len(by_decay)
    fractional = [
        t for t in expected if any(t["signals"][n] != int(t["signals"][n]) for n in DECAYED)
    ]
    assert len(fractional) >= len(expected) // 2

    names = WorkerNames.unique("decay")
    names.create_topics(broker.bootstrap)
    w = workers.new(MODEL, names, name="decay").start()
    reader = workers.reader(names.output_topic)
    w.wait_ready()
    lines = produce(broker.bootstrap, names.input_topic, events).read
    wait_consumed([w], names.input_topic, lines, timeout=120)
    got = collect(reader, expected, timeout=60, settle=w.settle)

    assert_same_as_backtest(got, expected, "decay")
    validator = schema_validator()
    for t in got:
        assert not list(validator.iter_errors(t)), t
