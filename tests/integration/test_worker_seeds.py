"""The seed examples end to end: each hand-written file in tests/data/seeds/ is produced (keyed by
account, like `pql produce`) into a worker running its example model, and the transitions the
worker emits must be exactly `pql backtest`'s for the same file (ignoring detected_at), each one
valid against schemas/pql-transition.schema.json.

All seed workers start together (one fixture for the module) so the six models cost one start-up.
The first three files name the account on every call; the last three also contain track calls
without `context.groupId`, which the worker routes through its user stage (README, "Live and
backtest agree").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.worker_harness import (
    EXAMPLES,
    SEEDS,
    TopicReader,
    WorkerNames,
    WorkerProc,
    Workers,
    backtest,
    collect,
    diff_report,
    ready_then_produce,
    schema_validator,
    transition_key,
    wait_consumed,
)

SEED_MODELS = ["weighted", "zoom", "slack", "team-chat", "icp-segments", "notion"]


@dataclass
class SeedRun:
    model: Path
    events: Path
    names: WorkerNames
    worker: WorkerProc
    reader: TopicReader
    lines: int


@pytest.fixture(scope="module")
def seed_runs(
    broker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SeedRun]]:
    tmp = tmp_path_factory.mktemp("seeds")
    ws = Workers(broker.bootstrap, tmp)
    try:
        runs: dict[str, SeedRun] = {}
        for name in SEED_MODELS:
            names = WorkerNames.unique(name)
            names.create_topics(broker.bootstrap)
            w = ws.new(EXAMPLES / f"{name}.yaml", names, name=name).start()
            reader = ws.reader(names.output_topic)
            events = SEEDS / f"{name}.jsonl"
            runs[name] = SeedRun(EXAMPLES / f"{name}.yaml", events, names, w, reader, 0)
        ready_then_produce(broker.bootstrap, runs.values())
        yield runs
    finally:
        ws.stop_all()


@pytest.mark.parametrize("name", SEED_MODELS)
def test_worker_seeds(name: str, seed_runs: dict[str, SeedRun], tmp_path: Path) -> None:
    run = seed_runs[name]
    expected = backtest(run.model, run.events, out_dir=tmp_path)
    wait_consumed([run.worker], run.names.input_topic, run.lines, timeout=30)
    got = collect(run.reader, expected, timeout=30, settle=run.worker.settle)

    validator = schema_validator()
    for t in got:
        errors = [e.message for e in validator.iter_errors(t)]
        assert not errors, f"{t['transition_id']}: {errors}"
    assert [t["model"]["name"] for t in got] == [name] * len(got)
    assert len(got) == len({t["transition_id"] for t in got}), "duplicates without a crash"
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, (
        f"{name}: worker != backtest\n{diff_report(got, expected)}"
    )
