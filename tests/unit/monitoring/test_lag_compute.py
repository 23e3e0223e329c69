"""`streams.io.lag` without a broker: the lag arithmetic (`compute_lag`) and the CLI's output
formats (the broker call is replaced, the formatting and totals are real)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.io import lag as lagmod
from streams.io.lag import LagRow, compute_lag, format_table, to_json, total_lag


def test_lag_is_log_end_minus_committed_sorted() -> None:
    rows = compute_lag(
        committed={("b", 0): 5, ("a", 1): 10, ("a", 0): 0},
        log_end={("b", 0): 8, ("a", 1): 25, ("a", 0): 3},
    )
    assert [(r.topic, r.partition, r.committed, r.log_end, r.lag) for r in rows] == [
        ("a", 0, 0, 3, 3),
        ("a", 1, 10, 25, 15),
        ("b", 0, 5, 8, 3),
    ]
    assert total_lag(rows) == 21


def test_uncommitted_partition_lags_from_log_start() -> None:
    rows = compute_lag(
        committed={("t", 0): None, ("t", 2): -1001},  # None and librdkafka's OFFSET_INVALID
        log_end={("t", 0): 40, ("t", 1): 7, ("t", 2): 9},
        log_start={("t", 0): 30, ("t", 1): 0, ("t", 2): -1},
    )
    assert [(r.partition, r.committed, r.log_start, r.lag) for r in rows] == [
        (0, None, 30, 10),
        (1, None, 0, 7),
        (2, None, 0, 9),
    ]


def test_commit_past_log_end_is_zero_not_negative() -> None:
    (row,) = compute_lag({("t", 0): 120}, {("t", 0): 100})
    assert row.lag == 0 and row.committed == 120


def test_partitions_not_asked_for_are_ignored() -> None:
    rows = compute_lag({("t", 0): 1, ("other", 3): 4}, {("t", 0): 2})
    assert [(r.topic, r.partition) for r in rows] == [("t", 0)]


def test_caught_up_is_zero() -> None:
    rows = compute_lag({("t", 0): 50, ("t", 1): 0}, {("t", 0): 50, ("t", 1): 0})
    assert [r.lag for r in rows] == [0, 0]


ROWS = [
    LagRow("events", 0, 7, 0, 26, 19),
    LagRow("events", 1, None, 0, 24, 24),
]


def test_table_has_rows_dash_for_uncommitted_and_totals() -> None:
    lines = format_table(ROWS).splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"]
    assert lines[1].split() == ["events", "0", "7", "26", "19"]
    assert lines[2].split() == ["events", "1", "-", "24", "24"]
    assert lines[3].split() == ["TOTAL", "2", "50", "43"]


def test_json_document() -> None:
    doc = json.loads(to_json("g", ROWS))
    assert doc["group"] == "g" and doc["total_lag"] == 43
    assert doc["partitions"][1] == {
        "topic": "events",
        "partition": 1,
        "committed": None,
        "log_start": 0,
        "log_end": 24,
        "lag": 24,
    }


@pytest.fixture()
def fake_lag(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake(bootstrap: str, group: str, topics: Any = None, **kw: Any) -> list[LagRow]:
        calls.append({"bootstrap": bootstrap, "group": group, "topics": topics, **kw})
        return ROWS

    monkeypatch.setattr(lagmod, "consumer_group_lag", fake)
    return calls


def test_cli_table_and_arguments(fake_lag: list[dict[str, Any]]) -> None:
    res = CliRunner().invoke(
        main, ["lag", "--broker", "h:1", "--group", "g", "--topic", "events", "--probe"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1].split() == ["TOTAL", "2", "50", "43"]
    assert fake_lag == [
        {
            "bootstrap": "h:1",
            "group": "g",
            "topics": ["events"],
            "probe": True,
            "timeout": 10.0,
            "security": None,
        }
    ]


def test_cli_json_and_default_auto_probe(fake_lag: list[dict[str, Any]]) -> None:
    res = CliRunner().invoke(main, ["lag", "--broker", "h:1", "--group", "g", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["total_lag"] == 43
    assert fake_lag[0]["topics"] is None and fake_lag[0]["probe"] is None


def test_cli_reports_broker_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: Any, **_k: Any) -> list[LagRow]:
        raise lagmod.LagError("topic 'nope': not found")

    monkeypatch.setattr(lagmod, "consumer_group_lag", boom)
    res = CliRunner().invoke(main, ["lag", "--broker", "h:1", "--group", "g"])
    assert res.exit_code == 1
    assert "topic 'nope': not found" in res.output


def test_cli_passes_security_settings(fake_lag: list[dict[str, Any]]) -> None:
    """`pql lag` against a SASL cluster: the same PQL_* / flags as the worker."""
    res = CliRunner().invoke(
        main,
        ["lag", "--broker", "h:1", "--group", "g", "--security-protocol", "SASL_SSL"],
        env={"PQL_SASL_MECHANISM": "SCRAM-SHA-512", "PQL_SASL_USERNAME": "pql"},
    )
    assert res.exit_code == 0, res.output
    assert fake_lag[0]["security"] == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pql",
    }
