"""A model whose signals change, taken by the running worker on real Apache Kafka (README "Changing
your model"): the worker builds the new signals from the input topic's retained records while
the old model keeps serving, then switches at one agreed stream time T; its transitions are
exactly `pql backtest --switch-model T=NEW.yaml`'s (which builds them from the same history), by
the same process, while events flow, and a restart after it goes on from the new model's states.

When the topic has lost its oldest records (retention), the backfilled signals count the events
since R, the latest first-retained event time, and say they are partial (`partial_signals`, the
`pql_partial_signals` gauge): `pql backtest --backfill-from R` gives the same. With the lost
history as a seed file (`--backfill-seed`) the signals are whole again."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.broker.kafka import KafkaBroker
from streams.io.kafka_config import consumer_config
from streams.io.simulate import generate
from streams.scoring.transitions import iso_ms
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_same_as_backtest,
    backtest,
    collect,
    metric_samples,
    name_accounts,
    produce,
    produce_in_background,
    wait_consumed,
    workers,  # noqa: F401 - fixture
    write_parts,
)

MODEL = EXAMPLES / "team-chat.yaml"
V3 = MODEL.read_text()
# v5: messages over 14 days instead of 30, and a new signal (uploads this week) that scores and
# makes a segment (entered at the switch by every account that uploaded that week).
V5 = (
    V3.replace("version: 3 ", "version: 5 ")
    .replace(
        'messages:      {count: "Message Sent", window: 30d}',
        'messages:      {count: "Message Sent", window: 14d}\n'
        '  uploads:       {count: "File Uploaded", window: 7d}',
    )
    .replace(
        "score:                             # points while a condition holds\n",
        "score:                             # points while a condition holds\n"
        '  - {when: "uploads >= 3", points: 20}\n',
    )
    .replace("segments:", 'segments:\n  uploading: "uploads >= 1"', 1)
)
SWITCHED = re.compile(r"switch to team-chat v5 at stream time (\d+), over backfilled signals")
PART_SWITCHED = re.compile(r"partition (\d+): switched to team-chat v5 at stream time")


def _v3_worker(
    workers: Workers,  # noqa: F811 - the fixture's value, passed on
    tmp_path: Path,
    prefix: str,
) -> tuple[list[Path], int, WorkerNames, Any, Path, WorkerProc]:
    """24 simulated accounts over 12 days in three parts, fresh topics, and a worker on v3 (its
    model file, rewritten to switch): (parts, a third's size, names, reader, model file, worker)."""
    events = name_accounts(generate(accounts=24, days=12, seed=29))
    parts = write_parts(tmp_path, events, 3)
    names = WorkerNames.unique(prefix)
    names.create_topics(workers.bootstrap)
    reader = workers.reader(names.output_topic)
    model = tmp_path / "model.yaml"
    model.write_text(V3)
    return parts, len(events) // 3, names, reader, model, workers.start(model, names)


def _wait_switched(w: WorkerProc, count: int, timeout: float = 60) -> set[int]:
    """The partitions that switched, once at least `count` of them have (each switch is made
    partition by partition, after the agreement)."""
    deadline = time.monotonic() + timeout
    while True:
        done = {int(p) for p in PART_SWITCHED.findall(w.log_path.read_text(errors="replace"))}
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"{sorted(done)} switched, not {count}:\n{w.log_tail(40)}")
        time.sleep(0.1)


@pytest.fixture()
def broker(session_kafka_broker: KafkaBroker) -> KafkaBroker:
    return session_kafka_broker


def test_a_signal_change_is_backfilled_from_the_topic_then_switched(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert V5.count("version: 5") == 1 and "uploads >= 3" in V5 and "window: 14d" in V5
    assert 'uploading: "uploads >= 1"' in V5
    parts, third, names, reader, model, w = _v3_worker(workers, tmp_path, "backfill")
    assert w.proc is not None
    pid = w.proc.pid
    produce(workers.bootstrap, names.input_topic, parts[0])
    wait_consumed([w], names.input_topic, third, 60)

    flowing = produce_in_background(workers.bootstrap, names.input_topic, parts[1], rate=third / 6)
    time.sleep(1)
    model.write_text(V5)
    at = int(w.wait_log(SWITCHED, 120).group(1))
    flowing.join(60)
    assert w.running and w.proc.pid == pid, "the switch restarted the worker"
    read = metric_samples(w.metrics(), "pql_backfill_records_total")
    assert read.get('{version="5"}', 0) >= third, read
    _wait_switched(w, PARTITIONS)
    time.sleep(w.settle)  # the switched states are flushed
    assert w.stop() == 0  # a restart reads the new model's states back (their own tag)
    w.start()
    w.wait_ready()
    produce(workers.bootstrap, names.input_topic, parts[2])
    v5 = tmp_path / "v5.yaml"
    v5.write_text(V5)
    expected = backtest(
        MODEL, *parts, out_dir=tmp_path, extra=["--switch-model", f"{iso_ms(at)}={v5}"]
    )
    got = collect(reader, expected, timeout=120, settle=w.settle)
    assert_same_as_backtest(got, expected)

    after = [t for t in got if t["occurred_at"] >= iso_ms(at)]
    changed = [t for t in after if t["trigger"] == "model_change"]
    assert any(t["segment"] == "uploading" for t in changed), "the switch changed nothing"
    assert all(t["model"]["version"] == 5 for t in after)
    # Every input record was still there: the history is whole, nothing is partial.
    assert all("partial_signals" not in t and "backfilled_from" not in t["model"] for t in got)
    text = w.log_path.read_text(errors="replace")
    assert "its signals differ, so each worker builds them from the input topic" in text
    assert re.search(r"backfill of v5 caught up: \d+ records", text), w.log_tail(40)
    assert w.running
    restarted = text.split("===== start")[-1]
    assert "switched to team-chat v5" not in restarted  # made once, kept
    assert "backfill of team-chat v5" not in restarted  # nothing left to backfill


def test_a_restart_between_the_partitions_switches_backfills_only_what_is_left(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Stopped once one partition switched, the worker starts with the switch time agreed and
    the switched partitions' stream time free to run past it (the third part flows as it
    backfills again): the backfill of the partitions left stops at the switch time, not at
    how far the switched ones got."""
    parts, third, names, reader, model, w = _v3_worker(workers, tmp_path, "bf-restart")
    produce(workers.bootstrap, names.input_topic, parts[0], parts[1])
    wait_consumed([w], names.input_topic, 2 * third, 60)
    model.write_text(V5)
    at = int(w.wait_log(SWITCHED, 120).group(1))
    first = _wait_switched(w, 1)
    assert w.stop() == 0
    assert len(first) < PARTITIONS, f"every partition switched before the stop: {first}"
    w.start()
    produce(workers.bootstrap, names.input_topic, parts[2])
    v5 = tmp_path / "v5.yaml"
    v5.write_text(V5)
    expected = backtest(
        MODEL, *parts, out_dir=tmp_path, extra=["--switch-model", f"{iso_ms(at)}={v5}"]
    )
    # The restarted worker starts, then backfills before its partitions left can switch and
    # send anything: quiet for longer than the settle time (a CI run gave up after 6.5 s of
    # it, with the backfill 3.5 s in and 18 transitions still to come).
    got = collect(reader, expected, timeout=120, settle=w.settle, give_up_idle=60)
    assert_same_as_backtest(got, expected)
    restarted = w.log_path.read_text(errors="replace").split("===== start")[-1]
    assert "backfill of team-chat v5: reading" in restarted, w.log_tail(40)
    assert _wait_switched(w, PARTITIONS) == set(range(PARTITIONS))
    changed = [t for t in got if t["trigger"] == "model_change"]
    assert any(t["segment"] == "uploading" for t in changed), "the switch changed nothing"


def _delete_what_was_read(bootstrap: str, topic: str) -> None:
    """Retention at work: every record of `topic` so far is deleted."""
    c = Consumer(consumer_config(bootstrap, None))
    try:
        ends = [
            TopicPartition(topic, q, c.get_watermark_offsets(TopicPartition(topic, q), 10)[1])
            for q in range(PARTITIONS)
        ]
    finally:
        c.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})  # referenced until its answers came
    for fut in admin.delete_records(ends).values():
        fut.result(30)


HISTORY = re.compile(r"over backfilled signals \(history from (\d+): partial until it fills\)")


@pytest.mark.parametrize("seeded", [False, True], ids=["retention-cut", "seeded"])
def test_a_backfill_over_a_cut_retention_is_partial_unless_seeded(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
    seeded: bool,
) -> None:
    events = name_accounts(generate(accounts=24, days=12, seed=31))
    parts = write_parts(tmp_path, events, 3)
    third = len(events) // 3
    names = WorkerNames.unique("cut" if not seeded else "seed")
    names.create_topics(workers.bootstrap)
    reader = workers.reader(names.output_topic)
    model = tmp_path / "model.yaml"
    model.write_text(V3)
    # The seed: an export taken once the first two thirds were sent (it must hold every event
    # before R; the topic's events from R on are taken from the topic).
    export = tmp_path / "export.jsonl"
    export.write_text(parts[0].read_text() + parts[1].read_text())
    seed = ["--backfill-seed", str(export)] if seeded else []
    w = workers.start(model, names, extra_args=seed)
    produce(workers.bootstrap, names.input_topic, parts[0])
    wait_consumed([w], names.input_topic, third, 60)
    _delete_what_was_read(workers.bootstrap, names.input_topic)  # the first third is gone
    produce(workers.bootstrap, names.input_topic, parts[1])
    model.write_text(V5)
    at = int(w.wait_log(SWITCHED, 120).group(1))
    produce(workers.bootstrap, names.input_topic, parts[2])
    v5 = tmp_path / "v5.yaml"
    v5.write_text(V5)
    extra = ["--switch-model", f"{iso_ms(at)}={v5}"]
    if seeded:
        w.wait_log(r"backfill of v5: \d+ events before \d+ from the seed", 5)
        assert not HISTORY.search(w.log_path.read_text(errors="replace"))
    else:
        history_from = int(w.wait_log(HISTORY, 5).group(1))
        extra += ["--backfill-from", iso_ms(history_from)]
    expected = backtest(MODEL, *parts, out_dir=tmp_path, extra=extra)
    got = collect(reader, expected, timeout=120, settle=w.settle)
    assert_same_as_backtest(got, expected)
    partial = [t for t in got if "partial_signals" in t]
    if seeded:
        assert not partial
        return
    # messages (14 days) is still partial at the end of the 12 days; uploads (7 days) filled.
    assert partial and all(t["model"]["backfilled_from"] == iso_ms(history_from) for t in partial)
    assert {n for t in partial for n in t["partial_signals"]} == {"messages", "uploads"}
    assert all(set(t["partial_signals"]) <= {"messages", "uploads"} for t in got if t in partial)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gauge = metric_samples(w.metrics(), "pql_partial_signals")
        if gauge == {'{signal="messages"}': 1.0}:
            break
        time.sleep(0.5)
    assert gauge == {'{signal="messages"}': 1.0}, gauge
