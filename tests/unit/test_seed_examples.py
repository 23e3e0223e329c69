"""The seed examples (issue 2, "Done when"): each example model replayed over a small
hand-written event file in tests/data/seeds/, through the backtest path (parse -> resolve ->
score -> advance), and the transitions asserted exactly.

Expected tuples are (kind, segment, account, occurred_at, score, trigger, message_id), written
out by hand from the model text; the comments show the arithmetic. Bucket sizes are the
defaults: 30d and 90d windows -> 1d buckets, 14d -> 12h (active_days always 1d), 7d -> 6h.
An event in a 1d bucket for day D leaves a 30d window at D+1 00:00 + 30 days.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streams.backtest.replay import run_backtest
from streams.events.timestamps import iso_to_epoch_ms
from streams.model.loader import load_model
from tests.unit.scoring.util import brief, validate

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "data" / "seeds"
EXAMPLES = ROOT / "examples"

Row = tuple[str, str | None, str, str, int | float, str, str | None]


def replay(model_name: str, events: Path, until: str) -> tuple[dict[str, list[Row]], dict]:
    model = load_model(EXAMPLES / f"{model_name}.yaml")
    out: list[dict[str, Any]] = []
    summary = run_backtest(model, [events], sink=out.append, until=iso_to_epoch_ms(until))
    per_account: dict[str, list[Row]] = defaultdict(list)
    for t in out:
        validate(t)
        assert t["model"] == {
            "name": model.name,
            "version": model.version,
            "effective_from": "1970-01-01T00:00:00.000Z",  # no switch: from the start
        }
        per_account[t["account_id"]].append(brief(t))  # type: ignore[arg-type]
    return dict(per_account), summary


def test_slack_2000_messages(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_slack", SEEDS / "make_slack.py")
    assert spec is not None and spec.loader is not None
    make_slack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_slack)
    lines = make_slack.merged_lines()
    assert len(lines) == 4 + 2000 + 600
    tmp = tmp_path / "slack.jsonl"
    tmp.write_text("\n".join(lines) + "\n")
    got, summary = replay("slack", tmp, "2026-03-01T00:00:00Z")
    assert got == {
        "bigteam": [
            # message 1500 (k=1499: +14,990 min = 10d 9h 50m): 3 x 25 points, not yet a PQL
            (
                "segment_entered",
                "almost_there",
                "bigteam",
                "2026-01-15T09:50:00.000Z",
                75,
                "event",
                "bigteam-1500",
            ),
            # message 2000 (+19,990 min = 13d 21h 10m): PQL, so no longer "almost there"
            (
                "qualified",
                None,
                "bigteam",
                "2026-01-18T21:10:00.000Z",
                100,
                "event",
                "bigteam-2000",
            ),
            (
                "segment_exited",
                "almost_there",
                "bigteam",
                "2026-01-18T21:10:00.000Z",
                100,
                "event",
                "bigteam-2000",
            ),
            # all three posters were last seen on Jan 18: they leave the 30d seats window at
            # Jan 19 + 30d, and 2,000 messages with 0 seats is "solo heavy". The PQL itself
            # cannot drop out: the message count is lifetime and there is no exit.
            (
                "segment_entered",
                "solo_heavy",
                "bigteam",
                "2026-02-18T00:00:00.000Z",
                100,
                "time",
                None,
            ),
        ],
        "duo": [
            # message 500 (k=499: 1d 5m + 14,970 min = 2026-01-16T09:35), two seats
            (
                "segment_entered",
                "solo_heavy",
                "duo",
                "2026-01-16T09:35:00.000Z",
                25,
                "event",
                "duo-500",
            ),
        ],
    }
    assert summary["accounts_seen"] == 2
    assert summary["pql_accounts"] == 1
    assert summary["pql_at_end"] == 1
    assert summary["events_rejected"] == {"invalid_type": 1}


def test_notion_pages_and_collaborators() -> None:
    got, summary = replay("notion", SEEDS / "notion.jsonl", "2026-03-01T00:00:00Z")
    assert got == {
        "docsco": [
            # third page, one writer and no editor yet
            (
                "segment_entered",
                "solo_writer",
                "docsco",
                "2026-01-05T11:00:00.000Z",
                0,
                "event",
                "n3",
            ),
            # u2 edits: 2 collaborators (u1 edited on Jan 6; u3 only viewed a page)
            ("qualified", None, "docsco", "2026-01-07T09:00:00.000Z", 0, "event", "n6"),
            (
                "segment_exited",
                "solo_writer",
                "docsco",
                "2026-01-07T09:00:00.000Z",
                0,
                "event",
                "n6",
            ),
            # Feb 5: the pages leave the window, still a PQL (exit is collaborators < 2).
            # Feb 6: u1's Jan 6 edit leaves -> 1 collaborator -> out.
            ("disqualified", None, "docsco", "2026-02-06T00:00:00.000Z", 0, "time", None),
        ],
        "solo": [
            (
                "segment_entered",
                "solo_writer",
                "solo",
                "2026-01-10T15:00:00.000Z",
                0,
                "event",
                "s3",
            ),
            # the three Jan 10 pages leave at Jan 11 + 30d; one page left
            ("segment_exited", "solo_writer", "solo", "2026-02-10T00:00:00.000Z", 0, "time", None),
        ],
    }
    assert summary["events_rejected"] == {
        "invalid_json": 1,
        "missing_account": 1,
        "missing_timestamp": 1,
    }
    assert (summary["accounts_seen"], summary["pql_accounts"], summary["pql_at_end"]) == (2, 1, 0)


def test_zoom_big_meetings() -> None:
    got, summary = replay("zoom", SEEDS / "zoom.jsonl", "2026-03-01T00:00:00Z")
    assert got == {
        "videoco": [
            # third meeting with 5+ people (the Jan 7 one had 3); hosts u1 and u2
            ("qualified", None, "videoco", "2026-01-08T10:00:00.000Z", 0, "event", "z4"),
            (
                "segment_entered",
                "multi_host_pql",
                "videoco",
                "2026-01-08T10:00:00.000Z",
                0,
                "event",
                "z4",
            ),
            # Feb 5: Jan 5's meeting leaves, 2 big meetings: stays (exit is < 2).
            # Feb 6: Jan 6's leaves, 1 big meeting: out.
            ("disqualified", None, "videoco", "2026-02-06T00:00:00.000Z", 0, "time", None),
            (
                "segment_exited",
                "multi_host_pql",
                "videoco",
                "2026-02-06T00:00:00.000Z",
                0,
                "time",
                None,
            ),
        ],
        "callsco": [
            # five meetings, none with 5+ participants ("five" is not a number; c5 has none)
            (
                "segment_entered",
                "small_calls_only",
                "callsco",
                "2026-01-12T13:00:00.000Z",
                0,
                "event",
                "c5",
            ),
            (
                "segment_exited",
                "small_calls_only",
                "callsco",
                "2026-02-12T00:00:00.000Z",
                0,
                "time",
                None,
            ),
        ],
    }
    assert (summary["accounts_seen"], summary["pql_accounts"]) == (2, 1)


def test_weighted_onboarding_core_feature_invites() -> None:
    got, summary = replay("weighted", SEEDS / "weighted.jsonl", "2026-03-01T00:00:00Z")
    assert got == {
        "acme": [
            # 30 (onboarded) + 40 (5 core uses) + 50 (invite) = 120
            ("qualified", None, "acme", "2026-01-07T09:00:00.000Z", 120, "event", "w7"),
            # Feb 6: the core uses leave -> 80, still >= 80. Feb 7: the invite leaves -> 30.
            ("disqualified", None, "acme", "2026-02-07T00:00:00.000Z", 30, "time", None),
        ],
        # beta: 30 + 50 = 80 (one core use): never a PQL, and the model has no segments.
    }
    assert (summary["accounts_seen"], summary["pql_accounts"]) == (2, 1)
    assert summary["pql_rate"] == 0.5


def test_icp_segments() -> None:
    got, summary = replay("icp-segments", SEEDS / "icp-segments.jsonl", "2026-05-01T00:00:00Z")
    assert got == {
        "fintech": [
            # u0's group call brings the firmographics
            ("segment_entered", "icp_fit", "fintech", "2026-01-05T08:30:00.000Z", 0, "event", "f2"),
            # u1 said "CTO" before joining any group; the title rides along with u1's group
            # call at 08:45 (buyers 1 -> 10 points, no status change).
            # Onboarded + 20 = 30 < 40, active today
            (
                "segment_entered",
                "purgatory",
                "fintech",
                "2026-01-05T09:00:00.000Z",
                30,
                "event",
                "f3",
            ),
            (
                "segment_entered",
                "buying_intent",
                "fintech",
                "2026-01-05T09:30:00.000Z",
                30,
                "event",
                "f4",
            ),
            (
                "segment_entered",
                "hot_not_pql",
                "fintech",
                "2026-01-05T09:30:00.000Z",
                30,
                "event",
                "f4",
            ),
            # + invite 20 = 50
            (
                "segment_exited",
                "purgatory",
                "fintech",
                "2026-01-05T10:00:00.000Z",
                50,
                "event",
                "f5",
            ),
            # third seat (u1, u2, u3) + 30 = 80; 250 employees, US
            ("qualified", None, "fintech", "2026-01-05T12:00:00.000Z", 80, "event", "f7"),
            (
                "segment_exited",
                "hot_not_pql",
                "fintech",
                "2026-01-05T12:00:00.000Z",
                80,
                "event",
                "f7",
            ),
            # The 06:00-12:00 six-hour bucket (u1, u2 and the pricing view) leaves the 7d
            # windows at 12:00 + 7d: one seat -> 50 < 60, and no pricing view.
            ("disqualified", None, "fintech", "2026-01-12T12:00:00.000Z", 50, "time", None),
            (
                "segment_exited",
                "buying_intent",
                "fintech",
                "2026-01-12T12:00:00.000Z",
                50,
                "time",
                None,
            ),
        ],
        "megacorp": [
            (
                "segment_entered",
                "icp_fit",
                "megacorp",
                "2026-01-06T08:00:00.000Z",
                0,
                "event",
                "g1",
            ),
            (
                "segment_entered",
                "purgatory",
                "megacorp",
                "2026-01-06T09:00:00.000Z",
                20,
                "event",
                "g2",
            ),
            # 3000 + 1600 MB ("big" is ignored)
            (
                "segment_entered",
                "free_limit_hit",
                "megacorp",
                "2026-01-06T11:00:00.000Z",
                20,
                "event",
                "g4",
            ),
            # the only active day (Jan 6) leaves the 14d window at Jan 7 + 14d
            (
                "segment_exited",
                "purgatory",
                "megacorp",
                "2026-01-21T00:00:00.000Z",
                20,
                "time",
                None,
            ),
            # the uploads leave the 90d window at Jan 7 + 90d
            (
                "segment_exited",
                "free_limit_hit",
                "megacorp",
                "2026-04-07T00:00:00.000Z",
                20,
                "time",
                None,
            ),
        ],
    }
    assert (summary["accounts_seen"], summary["pql_accounts"]) == (2, 1)
    assert summary["segments_entered"] == {
        "buying_intent": 1,
        "free_limit_hit": 1,
        "hot_not_pql": 1,
        "icp_fit": 2,
        "purgatory": 2,
    }


def test_team_chat() -> None:
    got, summary = replay("team-chat", SEEDS / "team-chat.jsonl", "2026-05-01T00:00:00Z")
    assert got == {
        "chatco": [
            (
                "segment_entered",
                "purgatory",
                "chatco",
                "2026-01-05T09:00:00.000Z",
                30,
                "event",
                "t2",
            ),
            # fifth message: + 40 = 70 (graded points: floor(5/100) * 5 = 0)
            (
                "segment_exited",
                "purgatory",
                "chatco",
                "2026-01-05T10:04:00.000Z",
                70,
                "event",
                "t7",
            ),
            # + invite 50 = 120, 50 employees, software
            ("qualified", None, "chatco", "2026-01-06T09:00:00.000Z", 120, "event", "t8"),
            (
                "segment_entered",
                "icp_pql",
                "chatco",
                "2026-01-06T09:00:00.000Z",
                120,
                "event",
                "t8",
            ),
            # Feb 5: messages leave -> 80, stays (exit is < 80). Feb 6: the invite -> 30.
            ("disqualified", None, "chatco", "2026-02-06T00:00:00.000Z", 30, "time", None),
            ("segment_exited", "icp_pql", "chatco", "2026-02-06T00:00:00.000Z", 30, "time", None),
        ],
        "lonely": [
            (
                "segment_entered",
                "buying_intent",
                "lonely",
                "2026-01-08T10:00:00.000Z",
                0,
                "event",
                "l3",
            ),
            (
                "segment_entered",
                "purgatory",
                "lonely",
                "2026-01-08T11:00:00.000Z",
                30,
                "event",
                "l4",
            ),
            # 80 points but 5 employees: never a PQL
            (
                "segment_exited",
                "purgatory",
                "lonely",
                "2026-01-08T12:00:00.000Z",
                80,
                "event",
                "l5",
            ),
            (
                "segment_entered",
                "free_limit_hit",
                "lonely",
                "2026-01-09T09:30:00.000Z",
                80,
                "event",
                "l7",
            ),
            # the 06:00-12:00 bucket of Jan 8 leaves the 7d window at Jan 15 12:00
            (
                "segment_exited",
                "buying_intent",
                "lonely",
                "2026-01-15T12:00:00.000Z",
                80,
                "time",
                None,
            ),
            # Jan 9's uploads leave the 90d window at Jan 10 + 90d (the invite left on Feb 8:
            # 30 points, but no active day is left, so no purgatory)
            (
                "segment_exited",
                "free_limit_hit",
                "lonely",
                "2026-04-10T00:00:00.000Z",
                30,
                "time",
                None,
            ),
        ],
    }
    assert (summary["accounts_seen"], summary["pql_accounts"], summary["pql_at_end"]) == (2, 1, 0)


@pytest.mark.parametrize(
    "name", ["slack", "notion", "zoom", "weighted", "icp-segments", "team-chat"]
)
def test_every_example_has_a_seed_file(name: str) -> None:
    assert (EXAMPLES / f"{name}.yaml").is_file()
    assert (SEEDS / f"{name}.jsonl").is_file()
