"""State survives losing the data dir: a worker runs a first part of the stream to completion,
stops, its data dir is deleted, and a worker with the same app id restores every account from
the changelog topics; the transitions of the rest of the stream are then exactly those of
`pql backtest` over the whole (concatenated) stream."""

from __future__ import annotations

import shutil
from pathlib import Path

from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    WorkerNames,
    Workers,
    assert_duplicates_identical,
    backtest,
    collect,
    diff_report,
    name_accounts,
    produce,
    transition_key,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"


def test_worker_wiped_state(broker: object, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = workers.bootstrap
    events = name_accounts(generate(accounts=24, days=12, seed=11))
    cut = len(events) // 5
    first = write_jsonl(tmp_path / "first.jsonl", events[:cut])
    rest = write_jsonl(tmp_path / "rest.jsonl", events[cut:])
    expected_first = backtest(MODEL, first, out_dir=tmp_path)
    expected = backtest(MODEL, first, rest, out_dir=tmp_path)
    first_ids = {t["transition_id"] for t in expected_first}
    all_ids = {t["transition_id"] for t in expected}
    follow_up = all_ids - first_ids
    assert first_ids <= all_ids
    # The test means something only if the rest of the stream depends on the first part's state:
    # the rest alone, from empty state, must give other transitions.
    fresh = {t["transition_id"] for t in backtest(MODEL, rest, out_dir=tmp_path)}
    assert fresh != follow_up and follow_up

    names = WorkerNames.unique("wiped")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    w = workers.start(MODEL, names)
    produce(bootstrap, names.input_topic, first)
    got_first = collect(reader, expected_first, timeout=60, settle=w.settle)
    assert {transition_key(t) for t in got_first} == {transition_key(t) for t in expected_first}, (
        diff_report(got_first, expected_first)
    )
    assert w.stop() == 0, w.log_tail()

    assert w.data_dir.is_dir()
    shutil.rmtree(w.data_dir)
    w.start().wait_ready(timeout=90)  # same app id: restores from the changelog topics
    assert w.data_dir.is_dir()
    # ...through the worker's own restore (streams/app/restore.py), not Faust's slow path.
    restored = {
        table: _sample(w.metrics(), f'pql_state_restored_records_total{{table="{table}"}}')
        for table in ("accounts", "users")
    }
    assert restored["accounts"] >= 24, restored  # at least one record per account
    before = len(reader.records)
    produce(bootstrap, names.input_topic, rest)
    # A worker restored from a wiped data dir can be quiet for a while on a loaded machine.
    got = collect(reader, expected, timeout=90, settle=w.settle, give_up_idle=20)

    after = got[before:]
    assert {t["transition_id"] for t in after} - first_ids == follow_up, diff_report(
        [t for t in after if t["transition_id"] not in first_ids],
        [t for t in expected if t["transition_id"] in follow_up],
    )
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )
    assert_duplicates_identical(got)


def _sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not exposed")
