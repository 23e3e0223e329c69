"""Two workers in one group (same app id, own data dirs and ports) split the partitions between
them, and together emit exactly the transitions one worker (and `pql backtest`) gives."""

from __future__ import annotations

import time
from pathlib import Path

from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_duplicates_identical,
    backtest,
    collect,
    diff_report,
    metric_samples,
    name_accounts,
    produce,
    transition_key,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"


def _input_partitions(w: WorkerProc, topic: str) -> set[int]:
    """Input partitions this worker has read events from (and still owns)."""
    samples = metric_samples(w.metrics(), "pql_consumer_lag_seconds")
    out = set()
    for labels in samples:
        if f'topic="{topic}"' in labels:
            out.add(int(labels.split('partition="')[1].split('"')[0]))
    return out


def _both_ready(ws: list[WorkerProc], timeout: float) -> None:
    """Both ready at once, twice in a row a second apart (the second join rebalances the first)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        ok = all(w.get("/readyz")[0] == 200 for w in ws)
        streak = streak + 1 if ok else 0
        if streak >= 3:
            return
        time.sleep(0.5)
    raise AssertionError("workers not ready together:\n" + "\n".join(w.log_tail(20) for w in ws))


def test_worker_two_workers(broker: object, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = workers.bootstrap
    events = write_jsonl(
        tmp_path / "events.jsonl", name_accounts(generate(accounts=24, days=12, seed=11))
    )
    expected = backtest(MODEL, events, out_dir=tmp_path)

    names = WorkerNames.unique("two")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    pair = [workers.new(MODEL, names, name=n).start() for n in ("w1", "w2")]
    for w in pair:
        w.wait_ready(timeout=90)
    _both_ready(pair, timeout=60)

    lines = produce(bootstrap, names.input_topic, events).read
    wait_consumed(pair, names.input_topic, lines, timeout=90)
    got = collect(reader, expected, timeout=90, settle=pair[0].settle)

    owned = [_input_partitions(w, names.input_topic) for w in pair]
    assert owned[0] and owned[1], f"both workers must read input: {owned}"
    assert not owned[0] & owned[1], f"a partition read by both: {owned}"
    assert owned[0] | owned[1] == set(range(PARTITIONS)), owned
    emitted = [sum(metric_samples(w.metrics(), "pql_transitions_total").values()) for w in pair]
    assert emitted[0] > 0 and emitted[1] > 0, f"transitions per worker: {emitted}"
    assert sum(emitted) == len(got), f"per worker {emitted}, read {len(got)}"

    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )
    assert_duplicates_identical(got)
