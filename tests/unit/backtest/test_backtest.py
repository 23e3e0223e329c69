"""`pql backtest`: the Backtest class, run_backtest, the summary figures (computed by hand) and
the click command."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.backtest.replay import run_backtest
from streams.backtest.runner import Backtest, RejectedLine
from streams.cli import main
from tests.unit.scoring.util import HOUR, MIN, T0, iso, model, track, validate

MODEL_TEXT = """\
name: bt
version: 7
signals:
  msgs: {count: "Message Sent"}
qualify:
  when: "msgs >= 2"
"""
MODEL = model(MODEL_TEXT)
CONV = "Subscription Started"


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _msg(account: str, hours: float, mid: str) -> str:
    return _line(
        track("Message Sent", T0 + int(hours * HOUR), user=f"u-{account}", account=account, mid=mid)
    )


def _conv(account: str, hours: float, mid: str) -> str:
    return _line(track(CONV, T0 + int(hours * HOUR), user=f"u-{account}", account=account, mid=mid))


# A history in time order. Per account (hours after T0):
#   A: msg 0, msg 10 (PQL at 10h, 10h after first event), converts at 34h (lead 24h)
#   B: msg 1, msg 5 (PQL at 5h, 4h after first event), never converts
#   C: msg 2, converts at 3, msg 6 (PQL at 6h, after converting: not a PQL "first")
#   D: msg 3 only
#   E: msg 4, msg 4.5 (PQL 0.5h after first event), converts at 4.5 (lead 0)
#   F: msg 5, converts at 6, never a PQL
#   G: msg 7 only
HISTORY = [
    _msg("A", 0, "a1"),
    _msg("B", 1, "b1"),
    _msg("C", 2, "c1"),
    _conv("C", 3, "c2"),
    _msg("D", 3, "d1"),
    "not json",
    _msg("E", 4, "e1"),
    _msg("E", 4.5, "e2"),
    _conv("E", 4.5, "e3"),
    _msg("B", 5, "b2"),
    _msg("F", 5, "f1"),
    _line(
        {
            "type": "track",
            "event": "Message Sent",
            "userId": "nobody",
            "timestamp": iso(T0 + 5 * HOUR),
        }
    ),
    _conv("F", 6, "f2"),
    _msg("C", 6, "c3"),
    _line({"type": "alias", "userId": "x", "timestamp": iso(T0)}),
    _msg("G", 7, "g1"),
    _line({"type": "track", "event": "Message Sent", "userId": "u-A", "context": {"groupId": "A"}}),
    _msg("A", 10, "a2"),
    _line(
        {
            "type": "track",
            "event": "Message Sent",
            "userId": "lost",
            "timestamp": iso(T0 + 11 * HOUR),
        }
    ),
    _conv("A", 34, "a3"),
]
EXPECTED_SUMMARY = {
    "events_read": 20,
    "events_applied": 15,
    "events_rejected": {
        "invalid_json": 1,
        "invalid_type": 1,
        "missing_account": 2,
        "missing_timestamp": 1,
    },
    "late_events_applied": 0,
    "duplicates_skipped": 0,
    "events_out_of_order": 0,
    "timestamps_adjusted": {},
    "accounts_seen": 7,
    "pql_accounts": 4,  # A, B, C, E
    "pql_rate": 0.5714,  # 4 / 7
    "pql_at_end": 4,
    # first event -> PQL: A 10h, B 4h, C 4h, E 0.5h -> median (4 + 4) / 2
    "median_hours_first_event_to_pql": 4.0,
    "transitions": {"qualified": 4},
    "segments_entered": {},
    "conversion": {
        "event": CONV,
        "converted_accounts": 4,  # A, C, E, F
        "pqls_before_conversion": 3,  # A (10h <= 34h), B (never converted), E (4.5h <= 4.5h)
        "conversion_rate_pql": 0.6667,  # A, E of A, B, E
        "conversion_rate_non_pql": 0.5,  # C, F of C, D, F, G
        "lift": 1.333,  # 0.6667 / 0.5
        "precision": 0.6667,
        "recall": 0.5,  # A, E of A, C, E, F
        "median_hours_pql_to_conversion": 12.0,  # A 24h, E 0h
    },
}


def _write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _without_timing(s: dict[str, Any]) -> dict[str, Any]:
    """Without timing, and without the funnel (`test_the_funnel_agrees_with_the_hand_figures`)."""
    return {
        k: v for k, v in s.items() if k not in ("elapsed_seconds", "events_per_second", "funnel")
    }


def test_summary_figures_by_hand(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    summary = run_backtest(
        MODEL, [_write(tmp_path / "h.jsonl", HISTORY)], sink=out.append, conversion_event=CONV
    )
    assert _without_timing(summary) == EXPECTED_SUMMARY
    assert summary["elapsed_seconds"] >= 0
    assert [(t["account_id"], t["occurred_at"], t["message_id"]) for t in out] == [
        ("E", iso(T0 + 4 * HOUR + 30 * MIN), "e2"),
        ("B", iso(T0 + 5 * HOUR), "b2"),
        ("C", iso(T0 + 6 * HOUR), "c3"),
        ("A", iso(T0 + 10 * HOUR), "a2"),
    ]
    for t in out:
        validate(t)


def test_the_funnel_agrees_with_the_hand_figures(tmp_path: Path) -> None:
    """Entry = the first event (the default), so the funnel's conversion is the figures above,
    with intervals."""
    summary = run_backtest(MODEL, [_write(tmp_path / "h.jsonl", HISTORY)], conversion_event=CONV)
    f = summary["funnel"]
    assert (f["accounts_entered"], f["pqls"], f["pql_rate"]) == (7, 4, 0.5714)
    assert f["hours_to_pql"]["median"] == 4.0
    conv, hand = f["conversion"], EXPECTED_SUMMARY["conversion"]
    assert (conv["pql"]["rate"], conv["non_pql"]["rate"]) == (
        hand["conversion_rate_pql"],
        hand["conversion_rate_non_pql"],
    )
    assert (conv["lift"], conv["precision"], conv["recall"]) == (
        hand["lift"],
        hand["precision"],
        hand["recall"],
    )
    assert conv["median_lead_hours"] == hand["median_hours_pql_to_conversion"]
    lo, hi = conv["pql"]["interval"]
    assert lo < conv["pql"]["rate"] < hi
    assert sum(c["entered"] for c in f["cohorts"]) == 7


def test_no_conversion_event_no_conversion_block(tmp_path: Path) -> None:
    summary = run_backtest(MODEL, [_write(tmp_path / "h.jsonl", HISTORY)])
    assert "conversion" not in summary
    assert summary["pql_accounts"] == 4


def test_gzip_is_detected_by_magic_bytes_not_name(tmp_path: Path) -> None:
    plain = run_backtest(MODEL, [_write(tmp_path / "h.jsonl", HISTORY)], conversion_event=CONV)
    # gzip content under a plain name, and plain content under a .gz name
    gz = run_backtest(
        MODEL, [_write(tmp_path / "h2.jsonl", HISTORY, gz=True)], conversion_event=CONV
    )
    fake = run_backtest(MODEL, [_write(tmp_path / "h3.jsonl.gz", HISTORY)], conversion_event=CONV)
    assert _without_timing(gz) == _without_timing(plain) == EXPECTED_SUMMARY
    assert _without_timing(fake) == EXPECTED_SUMMARY


def test_several_files_are_one_history(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", HISTORY[:9])
    b = _write(tmp_path / "b.jsonl.gz", HISTORY[9:], gz=True)
    summary = run_backtest(MODEL, [a, b], conversion_event=CONV)
    assert _without_timing(summary) == EXPECTED_SUMMARY


def test_blank_lines_are_skipped_and_progress_reported(tmp_path: Path) -> None:
    lines = [_msg("A", 0, f"x{i}") for i in range(9000)]
    lines.insert(5, "")
    seen: list[int] = []
    summary = run_backtest(MODEL, [_write(tmp_path / "p.jsonl", lines)], progress=seen.append)
    assert summary["events_read"] == 9000
    assert len(seen) == 1 and 0 < seen[0] <= (tmp_path / "p.jsonl").stat().st_size


def test_rejected_lines_by_reason_with_line_numbers() -> None:
    rejected: list[RejectedLine] = []
    bt = Backtest(MODEL, on_reject=rejected.append, now_ms=lambda: 0.0)
    for i, line in enumerate(HISTORY, start=1):
        bt.feed_line(line.encode(), i)
    bt.finish()  # routing rejects come when the order lets an event through
    assert sorted((r.line_no, r.reason) for r in rejected) == [
        (6, "invalid_json"),
        (12, "missing_account"),
        (15, "invalid_type"),
        (17, "missing_timestamp"),
        (19, "missing_account"),
    ]
    assert all(r.detail for r in rejected)


WINDOWED = model(
    """
    name: bt-late
    version: 1
    signals:
      msgs: {count: "Message Sent", window: 1d}
    qualify:
      when: "msgs >= 2"
    """
)


def test_late_and_too_late_events_are_counted() -> None:
    out: list[dict[str, Any]] = []
    bt = Backtest(WINDOWED, sink=out.append, now_ms=lambda: 0.0, max_disorder_ms=0)
    bt.feed_line(_msg("A", 30, "a1").encode(), 1)
    bt.feed_line(_msg("B", 31, "b1").encode(), 2)  # a later event: A's is applied
    bt.feed_line(_msg("A", 29, "a0").encode(), 3)  # late, inside the 1d window: applied
    bt.feed_line(_msg("A", 6, "old").encode(), 4)  # 24h older than the account: too late
    bt.finish()
    s = bt.summary.build()
    assert s["late_events_applied"] == 1
    assert s["events_out_of_order"] == 2
    assert s["events_rejected"] == {"too_late": 1}
    assert s["events_applied"] == 3
    assert [(t["kind"], t["occurred_at"], t["message_id"]) for t in out] == [
        ("qualified", iso(T0 + 30 * HOUR), "a0"),  # evaluated at the account's clock
    ]


def test_events_within_max_disorder_are_applied_in_time_order() -> None:
    """The same lines as above with an hour of disorder allowed: the 29h message is applied
    before the 30h one, so nothing is late and the transition is the time-sorted file's."""
    out: list[dict[str, Any]] = []
    bt = Backtest(WINDOWED, sink=out.append, now_ms=lambda: 0.0, max_disorder_ms=HOUR)
    bt.feed_line(_msg("A", 30, "a1").encode(), 1)
    bt.feed_line(_msg("A", 29, "a0").encode(), 2)
    bt.finish()
    s = bt.summary.build()
    assert s["late_events_applied"] == 0 and s["events_out_of_order"] == 0
    assert [(t["kind"], t["occurred_at"], t["message_id"]) for t in out] == [
        ("qualified", iso(T0 + 30 * HOUR), "a1"),
    ]


def test_duplicates_count_once() -> None:
    """A re-delivered event (same messageId) is skipped and counted, not applied twice."""
    out: list[dict[str, Any]] = []
    bt = Backtest(WINDOWED, sink=out.append, now_ms=lambda: 0.0)
    for n, (hour, mid) in enumerate([(1, "a1"), (2, "a2"), (2, "a2"), (3, "a1")]):
        bt.feed_line(_msg("A", hour, mid).encode(), n)
    bt.finish()
    s = bt.summary.build()
    assert s["duplicates_skipped"] == 2 and s["events_applied"] == 2
    assert [(t["kind"], t["message_id"], t["signals"]["msgs"]) for t in out] == [
        ("qualified", "a2", 2),
    ]


def test_finish_until_fires_drop_outs(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.jsonl", [_msg("A", 0, "a1"), _msg("A", 1, "a2")])
    out: list[dict[str, Any]] = []
    s = run_backtest(WINDOWED, [path], sink=out.append)
    assert [t["kind"] for t in out] == ["qualified"] and s["pql_at_end"] == 1
    out.clear()
    # 1d window -> 1h buckets: the 00:00 message leaves at 01:00 + 1d
    s = run_backtest(WINDOWED, [path], sink=out.append, until=T0 + 30 * HOUR)
    assert [(t["kind"], t["occurred_at"], t["trigger"]) for t in out] == [
        ("qualified", iso(T0 + HOUR), "event"),
        ("disqualified", iso(T0 + 25 * HOUR), "time"),
    ]
    assert s["pql_at_end"] == 0 and s["pql_accounts"] == 1


# -- the command -----------------------------------------------------------------------------


def test_cli_writes_out_and_report(tmp_path: Path) -> None:
    model_path = tmp_path / "m.yaml"
    model_path.write_text(MODEL_TEXT)
    events = _write(tmp_path / "h.jsonl", HISTORY, gz=True)
    out_path, report_path = tmp_path / "t.jsonl", tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--model",
            str(model_path),
            str(events),
            "--conversion-event",
            CONV,
            "--out",
            str(out_path),
            "--report",
            str(report_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    transitions = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert [t["message_id"] for t in transitions] == ["e2", "b2", "c3", "a2"]
    for t in transitions:
        validate(t)
    report = json.loads(report_path.read_text())
    assert report["model"] == {"name": "bt", "version": 7}
    assert _without_timing({k: v for k, v in report.items() if k != "model"}) == EXPECTED_SUMMARY
    for text in ("PQL rate", "57.1%", "lift", "1.333x", "recall", "50.0%", "12.0 h", str(out_path)):
        assert text in result.output, text


def test_cli_until_and_stdin(tmp_path: Path) -> None:
    model_path = tmp_path / "m.yaml"
    model_path.write_text(MODEL_TEXT)
    report_path = tmp_path / "r.json"
    data = ("\n".join(HISTORY) + "\n").encode()
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--model",
            str(model_path),
            "-",
            "--report",
            str(report_path),
            "--quiet",
            "--until",
            "2026-02-01T00:00:00Z",
        ],
        input=data,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(report_path.read_text())["pql_accounts"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--until", "tomorrow"], "not an ISO-8601 instant"),
        (["missing.jsonl"], "no such events file"),
    ],
)
def test_cli_errors(tmp_path: Path, args: list[str], message: str) -> None:
    model_path = tmp_path / "m.yaml"
    model_path.write_text(MODEL_TEXT)
    events = _write(tmp_path / "h.jsonl", HISTORY)
    argv = ["backtest", "--model", str(model_path), "--quiet"]
    argv += args if "missing.jsonl" in args else [str(events), *args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert message in result.output


def test_cli_refuses_an_invalid_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nversion: 1\nsignals:\n  m: {count: x, window: 3x}\n"
        "qualify:\n  when: 'nope >= 1'\n"
    )
    events = _write(tmp_path / "h.jsonl", HISTORY)
    result = CliRunner().invoke(main, ["backtest", "--model", str(bad), str(events), "--quiet"])
    assert result.exit_code != 0
    assert "is not a valid model" in result.output
    assert "4: signals.m.window" in result.output
    assert "6: qualify.when: unknown signal 'nope'" in result.output


def test_a_future_event_without_received_at_is_rejected_as_live() -> None:
    """Like the live worker, the backtest takes an event without `receivedAt` timestamped past
    when the history was received for a wrong device clock (default: now)."""
    line = _msg("A", 1, "a1")
    future = line.replace(iso(T0 + HOUR)[:4], "2091", 1)
    rejected: list[RejectedLine] = []
    bt = Backtest(WINDOWED, on_reject=rejected.append, received_by_ms=float(T0 + 2 * HOUR))
    bt.feed_line(line.encode(), 1)
    bt.feed_line(future.encode(), 2)
    bt.finish()
    assert [(r.line_no, r.reason) for r in rejected] == [(2, "future_timestamp")]
    # With no such instant (a synthetic history dated ahead), it is applied.
    bt = Backtest(WINDOWED, on_reject=rejected.append, received_by_ms=None)
    bt.feed_line(future.encode(), 1)
    bt.finish()
    assert bt.summary.build()["events_applied"] == 1
