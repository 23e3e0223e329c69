"""The repetitive part of the Slack seed: 2,000 messages for `bigteam` and 600 for `duo`.

`bulk()` is what tests/unit/test_seed_examples.py merges (by timestamp) with the hand-written
events in slack.jsonl; `python tests/data/seeds/make_slack.py > /tmp/slack-full.jsonl` writes
the merged file to inspect or replay with `pql backtest`.

- bigteam: message k (k = 0..1999) at 2026-01-05T00:00Z + k * 10 min, by u1, u2, u3 in turn.
- duo:     message k (k = 0..599)  at 2026-01-06T00:05Z + k * 30 min, by u8, u9 in turn.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2026, 1, 5, tzinfo=UTC)


def _msg(account: str, user: str, n: int, at: datetime) -> dict:
    return {
        "type": "track",
        "event": "Message Sent",
        "userId": user,
        "messageId": f"{account}-{n}",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "context": {"groupId": account},
    }


def bulk() -> list[dict]:
    out = [
        _msg("bigteam", f"u{k % 3 + 1}", k + 1, START + timedelta(minutes=10 * k))
        for k in range(2000)
    ]
    out += [
        _msg("duo", f"u{8 + k % 2}", k + 1, START + timedelta(days=1, minutes=5 + 30 * k))
        for k in range(600)
    ]
    return out


def merged_lines() -> list[str]:
    hand = (Path(__file__).with_name("slack.jsonl")).read_text().splitlines()
    rows = [(json.loads(line)["timestamp"], line) for line in hand if line.strip()]
    rows += [(e["timestamp"], json.dumps(e, separators=(",", ":"))) for e in bulk()]
    rows.sort(key=lambda r: r[0])  # stable: equal timestamps keep their order
    return [line for _, line in rows]


if __name__ == "__main__":
    sys.stdout.write("\n".join(merged_lines()) + "\n")
