"""State survives losing the data dir: a worker runs a first part of the stream to completion,
stops, its data dir is deleted, and a worker with the same app id restores every account from
the changelog topics; the transitions of the rest of the stream are then exactly those of
`pql backtest` over the whole (concatenated) stream.

On real Kafka the changelogs are first compacted for real: they are created with segments that
roll within a fraction of a second and a log cleaner that starts as soon as any record is
superseded, and the test waits until the cleaner has removed superseded account records
(offsets with gaps) before it restores. The embedded broker does not compact."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from streams.io.read import read_partition
from streams.io.simulate import generate
from streams.io.topics import TopicSpec, ensure_topics
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
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
TABLES = ("accounts", "users")  # both changelogs compact fast on Kafka
# Topic settings that make Kafka's log cleaner compact within seconds: a segment rolls on the
# first write 100 ms after it opened, and any superseded record makes a log worth cleaning.
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


def _changelog(names: WorkerNames, table: str) -> str:
    return f"{names.app_id}-state-{table}-changelog"


def _records_and_end(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records still in the log, offsets ever written) over all partitions."""
    kept = end = 0
    for part in range(PARTITIONS):
        offsets = [m.offset() for m in read_partition(bootstrap, topic, part, 0)]
        kept += len(offsets)
        end += offsets[-1] + 1 if offsets else 0
    return kept, end


def _wait_compacted(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[int, int]:
    """Until the log cleaner has removed records from `topic`: returns (kept, end)."""
    deadline = time.monotonic() + timeout
    while True:
        kept, end = _records_and_end(bootstrap, topic)
        if kept < end or time.monotonic() > deadline:
            return kept, end
        time.sleep(1.0)


def test_worker_wiped_state(broker: Any, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
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
    compacting = broker.name == "kafka"
    if compacting:  # before the worker, which keeps topics it finds
        ensure_topics(
            bootstrap,
            [TopicSpec(_changelog(names, t), PARTITIONS, FAST_COMPACTION) for t in TABLES],
        )
    reader = workers.reader(names.output_topic)
    w = workers.start(MODEL, names)
    # Over ~4 s, so accounts are flushed (written to the changelog) several times each.
    produce(bootstrap, names.input_topic, first, rate=cut / 4)
    got_first = collect(reader, expected_first, timeout=60, settle=w.settle)
    assert {transition_key(t) for t in got_first} == {transition_key(t) for t in expected_first}, (
        diff_report(got_first, expected_first)
    )
    assert w.stop() == 0, w.log_tail()

    if compacting:
        # Accounts are rewritten at every flush that touched them: the cleaner must have
        # dropped superseded versions. (A user's record changes only with its traits or
        # account, so the users changelog may have nothing to drop.)
        kept, end = _wait_compacted(bootstrap, _changelog(names, "accounts"))
        assert kept < end, f"accounts changelog not compacted: {kept} of {end} records kept"

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
