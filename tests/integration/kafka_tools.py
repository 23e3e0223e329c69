"""Kafka's own command-line tools, run from the same jars as the test broker, as the reference
our commands are compared with."""

from __future__ import annotations

from streams.broker.kafka import kafka_tool

CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

# (topic, partition) -> (committed offset or None, log end offset, lag or None)
GroupOffsets = dict[tuple[str, int], tuple[int | None, int, int | None]]


def _int(cell: str) -> int | None:
    return None if cell == "-" else int(cell)


def describe_group(bootstrap: str, group: str) -> GroupOffsets:
    """What `kafka-consumer-groups.sh --describe --group GROUP` says, per partition."""
    res = kafka_tool(
        CONSUMER_GROUP_COMMAND, "--bootstrap-server", bootstrap, "--describe", "--group", group
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rows: GroupOffsets = {}
    header: list[str] | None = None
    for line in res.stdout.splitlines():
        cells = line.split()
        if cells[:2] == ["GROUP", "TOPIC"]:
            header = cells
            continue
        if header is None or len(cells) < 6 or cells[0] != group:
            continue
        row = dict(zip(header, cells, strict=False))
        log_end = _int(row["LOG-END-OFFSET"])
        assert log_end is not None, line
        rows[(row["TOPIC"], int(row["PARTITION"]))] = (
            _int(row["CURRENT-OFFSET"]),
            log_end,
            _int(row["LAG"]),
        )
    assert header is not None, f"no table in the tool's output:\n{res.stdout}\n{res.stderr}"
    return rows
