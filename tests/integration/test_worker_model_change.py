"""A model changed while the worker runs, on real Apache Kafka (README "Changing your model"):

- by SIGHUP (the model file polled not at all): an invalid file first, refused with its line and
  field while the old model keeps serving; then a newer model with other rules, applied from
  kept state by the same process while events flow;
- by a Kubernetes-style ConfigMap update (the `..data` symlink swapped) seen by two workers 3 s
  apart: one switch, at one stream time, in every partition.

Either way the worker's transitions are exactly `pql backtest --switch-model T=NEW.yaml`'s, T
being the stream time the worker logged (and stamped as `model.effective_from`)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from streams.broker.kafka import KafkaBroker
from streams.io.simulate import generate
from streams.scoring.transitions import iso_ms
from tests.integration.worker_harness import (
    EXAMPLES,
    PARTITIONS,
    TopicReader,
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
# v4: the same signals, other rules (a lower bar, another segment threshold).
V4 = (
    V3.replace("version: 3 ", "version: 4 ")
    .replace('when: "score >= 100 and employees >= 10"', 'when: "score >= 70"')
    .replace('free_limit_hit: "storage_mb >= 4500"', 'free_limit_hit: "storage_mb >= 2000"')
)
SWITCHED = re.compile(r"switch to team-chat v4 at stream time (\d+)")


@pytest.fixture()
def broker(session_kafka_broker: KafkaBroker) -> KafkaBroker:
    return session_kafka_broker


def _switch_time(ws: list[WorkerProc], timeout: float = 90) -> int:
    """The switch time every worker logged (they must agree)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [SWITCHED.findall(w.log_path.read_text(errors="replace")) for w in ws]
        if all(found):
            times = {int(t) for f in found for t in f}
            assert len(times) == 1, f"the workers disagree on the switch time: {found}"
            return times.pop()
        time.sleep(0.3)
    raise AssertionError("no switch logged:\n" + "\n".join(w.log_tail(30) for w in ws))


def _wait_log(w: WorkerProc, text: str, timeout: float = 30) -> None:
    w.wait_log(re.escape(text), timeout)


def _check_after_switch(got: list[dict], at: int) -> None:
    """Every transition from the switch on is v4's, stamped with the switch time; the ones
    the switch itself made are model_change ones at that instant."""
    assert any(t["trigger"] == "model_change" for t in got), "the switch changed nothing"
    for t in got:
        if t["trigger"] == "model_change":
            assert t["occurred_at"] == iso_ms(at)
        if t["occurred_at"] > iso_ms(at) or t["trigger"] == "model_change":
            assert t["model"] == {"name": "team-chat", "version": 4, "effective_from": iso_ms(at)}
        if t["occurred_at"] < iso_ms(at):
            assert t["model"]["version"] == 3


def _scenario(
    pool: Workers, tmp_path: Path, tag: str
) -> tuple[list[Path], int, WorkerNames, TopicReader]:
    """The history in three parts (and a third's size), the app's topics, a reader of its
    transitions."""
    events = name_accounts(generate(accounts=24, days=12, seed=23))
    parts = write_parts(tmp_path, events, 3)
    names = WorkerNames.unique(tag)
    names.create_topics(pool.bootstrap)
    return parts, len(events) // 3, names, pool.reader(names.output_topic)


def _rest_as_the_backtest_says(
    w: WorkerProc,
    reader: TopicReader,
    names: WorkerNames,
    parts: list[Path],
    at: int,
    flowing: threading.Thread | None,
    tmp_path: Path,
) -> None:
    """The rest of the events, then: the transitions are `pql backtest --switch-model`'s."""
    if flowing is not None:
        flowing.join(60)
    produce(w.bootstrap, names.input_topic, parts[2])
    v4 = tmp_path / "v4.yaml"
    v4.write_text(V4)
    expected = backtest(
        MODEL, *parts, out_dir=tmp_path, extra=["--switch-model", f"{iso_ms(at)}={v4}"]
    )
    got = collect(reader, expected, timeout=120, settle=w.settle)
    assert_same_as_backtest(got, expected)
    _check_after_switch(got, at)


def test_sighup_applies_a_newer_model_from_kept_state_and_refuses_an_invalid_one(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    parts, third, names, reader = _scenario(workers, tmp_path, "sighup")
    model = tmp_path / "model.yaml"
    model.write_text(V3)
    w = workers.start(model, names, extra_args=["--model-poll", "0"])
    assert w.proc is not None
    pid = w.proc.pid
    produce(bootstrap, names.input_topic, parts[0])
    wait_consumed([w], names.input_topic, third, 60)

    model.write_text(
        V3.replace("version: 3 ", "version: 4 ").replace("window: 30d}", "window: 1month}", 1)
    )
    w.send_signal(signal.SIGHUP)
    _wait_log(w, "the new model file is not valid")
    text = w.log_path.read_text(errors="replace")
    assert f"{model}:6: signals.messages.window" in text, w.log_tail(20)
    reloads = metric_samples(w.metrics(), "pql_model_reloads_total")
    assert reloads.get('{result="invalid"}') == 1.0, reloads

    flowing = produce_in_background(bootstrap, names.input_topic, parts[1], rate=third / 6)
    time.sleep(1)
    model.write_text(V4)
    w.send_signal(signal.SIGHUP)
    at = _switch_time([w])
    _rest_as_the_backtest_says(w, reader, names, parts, at, flowing, tmp_path)
    assert w.running and w.proc.pid == pid, "the switch restarted the worker"
    info = metric_samples(w.metrics(), "pql_model_info")
    assert any('version="4"' in labels for labels in info), info


def _configmap(root: Path, text: str) -> Path:
    """A ConfigMap volume as the kubelet writes it: `model.yaml -> ..data/model.yaml`,
    `..data -> ..<timestamp>/`."""
    root.mkdir(parents=True, exist_ok=True)
    _configmap_update(root, text)
    (root / "model.yaml").symlink_to("..data/model.yaml")
    return root / "model.yaml"


def _configmap_update(root: Path, text: str) -> None:
    """The kubelet's update: a new timestamped directory, then `..data` swapped atomically."""
    stamp = root / f"..{time.time_ns()}"
    stamp.mkdir()
    (stamp / "model.yaml").write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, root / "..data")


def test_a_configmap_update_seen_by_two_workers_apart_is_one_switch(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    parts, third, names, reader = _scenario(workers, tmp_path, "configmap")
    pod_a, pod_b = tmp_path / "pod-a", tmp_path / "pod-b"
    wa = workers.start(_configmap(pod_a, V3), names, name="w1")
    wb = workers.start(_configmap(pod_b, V3), names, name="w2")
    produce(bootstrap, names.input_topic, parts[0])
    wait_consumed([wa, wb], names.input_topic, third, 60)

    flowing = produce_in_background(bootstrap, names.input_topic, parts[1], rate=third / 8)
    time.sleep(1)
    _configmap_update(pod_a, V4)
    time.sleep(3)
    _configmap_update(pod_b, V4)
    at = _switch_time([wa, wb])
    _rest_as_the_backtest_says(wa, reader, names, parts, at, flowing, tmp_path)
    # One announcement: the second pod found the model already on its way.
    announced = [
        w.log_path.read_text(errors="replace").count("announcing the switch to team-chat v4")
        for w in (wa, wb)
    ]
    assert sorted(announced) == [0, 1], announced


def test_a_worker_restarted_with_a_newer_model_switches_from_its_kept_state(
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The chart's `model.reload: restart`: the worker stops, its file changes, it starts again
    on its kept state and makes the switch; a second restart with the same file switches
    nothing again."""
    bootstrap = workers.bootstrap
    parts, third, names, reader = _scenario(workers, tmp_path, "restart")
    model = tmp_path / "model.yaml"
    model.write_text(V3)
    w = workers.start(model, names)
    produce(bootstrap, names.input_topic, parts[0])
    wait_consumed([w], names.input_topic, third, 60)
    time.sleep(w.settle)  # what it read is applied and flushed
    assert w.stop() == 0
    model.write_text(V4)
    w.start()
    w.wait_ready()
    flowing = produce_in_background(bootstrap, names.input_topic, parts[1], rate=third / 6)
    at = _switch_time([w])
    text = w.log_path.read_text(errors="replace")
    assert text.count("announcing the switch to team-chat v4") == 1
    flowing.join(60)
    assert w.stop() == 0
    w.start()  # the same file again: v4 is live, nothing to announce or switch
    w.wait_ready()
    _rest_as_the_backtest_says(w, reader, names, parts, at, None, tmp_path)
    text = w.log_path.read_text(errors="replace")
    assert text.count("announcing the switch") == 1
    # Each partition switched once (the third run found its version in its table).
    assert len(re.findall(r"partition \d: switched to team-chat v4", text)) == PARTITIONS
