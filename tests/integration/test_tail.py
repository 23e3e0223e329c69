"""`pql tail` against the embedded broker: shows produced transitions (table and --json), stops
at --max / --timeout with the right exit code, waits for a missing topic without auto-creating
it, and starts at the end unless --from-beginning."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from confluent_kafka import Producer

from streams.broker.embedded import EmbeddedBroker
from streams.cli import main
from streams.io.tail import iter_transitions
from streams.io.topics import TopicSpec, ensure_topics, topic_partitions

REPO = Path(__file__).resolve().parents[2]


def _transition(account: str, i: int, **over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "transition_id": f"{i:032x}",
        "account_id": account,
        "model": {"name": "team-chat", "version": 3, "effective_from": "1970-01-01T00:00:00.000Z"},
        "kind": "qualified",
        "segment": None,
        "score": 120,
        "previous_score": 90,
        "pql": True,
        "segments": [],
        "reasons": [
            {"rule": "messages >= 5", "points": 40, "signals": {"messages": 7}},
            {"rule": "seats >= 3", "points": 50, "signals": {"seats": 4}},
            {"rule": "integrations >= 1", "points": 20, "signals": {"integrations": 1}},
            {"rule": "admin invited", "points": 10, "signals": {}},
        ],
        "condition": {"expr": "score >= 100", "values": {"score": 120}},
        "signals": {"messages": 7},
        "occurred_at": f"2026-01-05T10:00:{i:02d}.000Z",
        "detected_at": "2026-01-05T10:00:09.000Z",
        "trigger": "event",
        "message_id": f"m-{i}",
    }
    t.update(over)
    return t


def _produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for r in records:
        producer.produce(topic, json.dumps(r).encode(), key=r["account_id"].encode())
    assert producer.flush(10) == 0


def test_table_shows_transitions(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 3)])
    records = [
        _transition("acme", 1),
        _transition("globex", 2, kind="segment_entered", segment="buying_intent"),
    ]
    _produce(broker.bootstrap, topic_name, records)
    result = CliRunner().invoke(
        main,
        [
            "tail",
            "--broker",
            broker.bootstrap,
            "--topic",
            topic_name,
            "--from-beginning",
            "--max",
            "2",
            "--timeout",
            "20",
        ],
        env={"COLUMNS": "200"},  # rows must not wrap whatever the runner's terminal
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "occurred_at",
        "acme",
        "globex",
        "qualified",
        "segment_entered buying_intent",
        "90 -> 120",
        "seats >= 3 (+50)",
        "messages >= 5 (+40)",
        "+1 more",
        "2026-01-05T10:00:01.000Z",
    ):
        assert expected in out, (expected, out)
    assert "admin invited" not in out  # only the top 3 reasons


def test_json_prints_each_record_verbatim(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 1)])
    records = [_transition("acme", i) for i in range(3)]
    _produce(broker.bootstrap, topic_name, records)
    result = CliRunner().invoke(
        main,
        [
            "tail",
            "--broker",
            broker.bootstrap,
            "--topic",
            topic_name,
            "--from-beginning",
            "--max",
            "3",
            "--timeout",
            "20",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == records


def test_max_not_reached_within_timeout_fails(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 2)])
    _produce(broker.bootstrap, topic_name, [_transition("acme", 1)])
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "tail",
            "--broker",
            broker.bootstrap,
            "--topic",
            topic_name,
            "--from-beginning",
            "--max",
            "5",
            "--timeout",
            "3",
            "--json",
        ],
    )
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert "only 1 of 5" in result.output


def test_waits_for_missing_topic_without_creating_it(
    broker: EmbeddedBroker, topic_name: str
) -> None:
    got: list[Any] = []

    def run() -> None:
        for rec in iter_transitions(broker.bootstrap, topic_name, from_beginning=True, timeout=20):
            got.append(rec.transition)
            return

    reader = threading.Thread(target=run)
    reader.start()
    time.sleep(2)
    assert topic_partitions(broker.bootstrap, topic_name) is None  # tail did not auto-create it
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 2)])  # 2, not the broker's 4
    _produce(broker.bootstrap, topic_name, [_transition("acme", 7)])
    reader.join(30)
    assert not reader.is_alive()
    assert got == [_transition("acme", 7)]


def test_live_tail_starts_at_the_end(broker: EmbeddedBroker, topic_name: str) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 2)])
    _produce(broker.bootstrap, topic_name, [_transition("old-account", 0)])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "tail",
            "--broker",
            broker.bootstrap,
            "--topic",
            topic_name,
            "--max",
            "1",
            "--timeout",
            "30",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        i = 1
        while proc.poll() is None and i < 60:  # keep producing until the tail has seen one
            _produce(broker.bootstrap, topic_name, [_transition("new-account", i)])
            i += 1
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out)["account_id"] == "new-account"
