"""`pql produce` / `produce_file` against the embedded broker: keys are the resolved accounts and
land where Kafka's (and aiokafka's, so Faust's) murmur2 partitioner puts them; bad lines arrive
unkeyed and byte-identical; gzip and stdin work; errors say what to do."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.broker.embedded import EmbeddedBroker, free_port
from streams.cli import main
from streams.io.produce import produce_file
from streams.io.topics import TopicSpec, ensure_topics, topic_partitions


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Message]:
    partitions = topic_partitions(bootstrap, topic)
    assert partitions is not None
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        # anything extra would be a bug too
        extra = consumer.poll(0.5)
        assert extra is None or extra.error() is not None, "more records than produced"
    finally:
        consumer.close()
    assert len(out) == expected
    return out


def _track(user: str, account: str | None, i: int) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": "track",
        "event": "Message Sent",
        "userId": user,
        "messageId": f"m-{user}-{i}",
        "timestamp": "2026-01-05T10:00:00.000Z",
    }
    if account is not None:
        ev["context"] = {"groupId": account}
    return ev


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_keys_land_on_murmur2_partition(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    partitions = 7
    accounts = [f"acct-{i:04d}" for i in range(300)] + ["acme", "Ünïcode-客户", "a"]
    lines = [json.dumps(_track(f"u-{a}", a, 0)) for a in accounts]
    stats = produce_file(
        broker.bootstrap, [_write_jsonl(tmp_path / "ev.jsonl", lines)], topic_name, partitions
    )
    assert (stats.delivered, stats.by_account, stats.unkeyed) == (len(accounts), len(accounts), 0)

    java_partitioner = DefaultPartitioner()
    all_parts = list(range(partitions))
    crc_differs = 0
    for msg in _consume_all(broker.bootstrap, topic_name, len(accounts)):
        key = msg.key()
        assert key is not None
        assert msg.partition() == java_partitioner(key, all_parts, all_parts), key
        crc_differs += (zlib.crc32(key) % partitions) != msg.partition()
    # librdkafka's default (CRC32) would have put many keys elsewhere: the check discriminates.
    assert crc_differs > len(accounts) // 2
    assert sum(stats.partitions.values()) == len(accounts)
    assert len(stats.partitions) == partitions  # 300 keys reach every partition


def test_key_is_resolved_account_else_user(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    events = [
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "messageId": "g1",
            "timestamp": "2026-01-05T09:00:00Z",
        },
        _track("u1", None, 1),  # no groupId: the account u1 joined above
        _track("u2", None, 1),  # u2 joined nothing: keyed by the user
        {
            "type": "identify",
            "userId": "u3",
            "traits": {"title": "CTO"},
            "messageId": "i3",
            "timestamp": "2026-01-05T09:00:00Z",
        },
        _track("u1", "globex", 2),  # an explicit groupId wins
    ]
    path = _write_jsonl(tmp_path / "ev.jsonl", [json.dumps(e) for e in events])
    stats = produce_file(broker.bootstrap, [path], topic_name, 3)
    assert (stats.by_account, stats.by_user, stats.unkeyed) == (3, 2, 0)
    got = {
        json.loads(m.value())["messageId"]: m.key()
        for m in _consume_all(broker.bootstrap, topic_name, len(events))
    }
    assert got == {
        "g1": b"acme",
        "m-u1-1": b"acme",
        "m-u2-1": b"u2",
        "i3": b"u3",
        "m-u1-2": b"globex",
    }


def test_unparseable_lines_arrive_unkeyed_and_unchanged(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    bad = [
        "this is not json",
        '{"type": "alias", "userId": "u1", "timestamp": "2026-01-05T10:00:00Z"}',
        "[1, 2, 3]",
        '{"type":"track","event":"X","userId":"u1"}   ',  # no timestamp; trailing spaces kept
        '{"truncated": ',
    ]
    good = json.dumps(_track("u9", "acme", 0))
    raw = ("\r\n".join([bad[0], good, *bad[1:]]) + "\n\n\n").encode()  # CRLF + blank lines
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(raw)
    stats = produce_file(broker.bootstrap, [path], topic_name, 2)
    assert (stats.read, stats.unkeyed, stats.by_account) == (len(bad) + 1, len(bad), 1)
    msgs = _consume_all(broker.bootstrap, topic_name, len(bad) + 1)
    unkeyed = sorted(m.value().decode() for m in msgs if m.key() is None)
    assert unkeyed == sorted(bad)
    assert [m.value().decode() for m in msgs if m.key() == b"acme"] == [good]


def test_gzip_detected_by_magic_bytes(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    lines = [json.dumps(_track(f"u{i}", f"acct-{i % 5}", i)) for i in range(50)]
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress("\n".join(lines).encode()))  # no final newline either
    misnamed = tmp_path / "events-really-gzip.jsonl"
    misnamed.write_bytes(gzip.compress("\n".join(lines[:10]).encode()))
    stats = produce_file(broker.bootstrap, [gz, misnamed], topic_name, 3)
    assert (stats.delivered, stats.by_account) == (60, 60)
    values = sorted(m.value().decode() for m in _consume_all(broker.bootstrap, topic_name, 60))
    assert values == sorted(lines + lines[:10])


def test_rate_paces(broker: EmbeddedBroker, topic_name: str, tmp_path: Path) -> None:
    lines = [json.dumps(_track("u", "acme", i)) for i in range(21)]
    started = time.monotonic()
    produce_file(
        broker.bootstrap, [_write_jsonl(tmp_path / "e.jsonl", lines)], topic_name, 1, rate=20
    )
    assert time.monotonic() - started >= 0.95  # 21 events at 20/s: the last is due at 1.0 s


def test_cli_stdin_and_summary(broker: EmbeddedBroker, topic_name: str) -> None:
    lines = [json.dumps(_track("u1", "acme", i)) for i in range(3)] + ["garbage"]
    result = CliRunner().invoke(
        main,
        ["produce", "--broker", broker.bootstrap, "--topic", topic_name, "--partitions", "2", "-"],
        input="\n".join(lines) + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "4 events" in result.output and "1 unparseable" in result.output
    assert topic_partitions(broker.bootstrap, topic_name) == 2
    assert len(_consume_all(broker.bootstrap, topic_name, 4)) == 4


def test_cli_partition_mismatch_says_what_to_do(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    ensure_topics(broker.bootstrap, [TopicSpec(topic_name, 3)])
    path = _write_jsonl(tmp_path / "e.jsonl", [json.dumps(_track("u", "a", 0))])
    args = ["produce", "--broker", broker.bootstrap, "--topic", topic_name]
    result = CliRunner().invoke(main, [*args, "--partitions", "6", str(path)])
    assert result.exit_code == 1
    assert "has 3 partitions but 6 are required" in result.output
    # Without --partitions the existing topic is accepted as it is.
    result = CliRunner().invoke(main, [*args, str(path)])
    assert result.exit_code == 0, result.output


def test_cli_unreachable_broker_says_start_one(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "e.jsonl", [json.dumps(_track("u", "a", 0))])
    result = CliRunner().invoke(
        main, ["produce", "--broker", f"127.0.0.1:{free_port()}", str(path)]
    )
    assert result.exit_code == 1
    assert "pql broker" in result.output


@pytest.mark.parametrize("partitions", [None, 5])
def test_default_topic_creation(
    broker: EmbeddedBroker, topic_name: str, tmp_path: Path, partitions: int | None
) -> None:
    path = _write_jsonl(tmp_path / "e.jsonl", [json.dumps(_track("u", "a", 0))])
    produce_file(broker.bootstrap, [path], topic_name, partitions)
    assert topic_partitions(broker.bootstrap, topic_name) == (partitions or 4)
