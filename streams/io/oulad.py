"""The OULAD slice (`../shared/data/oulad-aaa-2013j`, CC BY 4.0) as product events, for
`pql fit` and `pql backtest` on real behaviour with an outcome:

- each student is an account (and its one user), `s<id_student>`;
- each studentVle row is a track event `<activity type> viewed` (oucontent, forumng, resource,
  ...) with properties `clicks` and `site`, on course day `date` (day 0 = 2013-10-05, noon UTC,
  a row's index in seconds after it, so the order is the file's);
- a `Passed` track event on day 240 (the course's end) for Pass and Distinction: the conversion.

    python -m streams.io.oulad ../shared/data/oulad-aaa-2013j oulad.jsonl
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY0 = datetime(2013, 10, 5, 12, tzinfo=UTC)
PASSED_DAY = 240


def _iso(day: int, seconds: int = 0) -> str:
    when = DAY0 + timedelta(days=day, seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def convert(directory: Path, out: Path) -> tuple[int, int]:
    """(events written, students who passed)."""
    with (directory / "vle.csv").open(newline="") as f:
        types = {row["id_site"]: row["activity_type"] for row in csv.DictReader(f)}
    n = passed = 0
    with out.open("w") as w, (directory / "studentVle.csv").open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            student = f"s{row['id_student']}"
            event = {
                "type": "track",
                "event": f"{types.get(row['id_site'], 'unknown')} viewed",
                "userId": student,
                "context": {"groupId": student},
                "timestamp": _iso(int(row["date"]), i % 3600),
                "properties": {"clicks": int(row["sum_click"]), "site": row["id_site"]},
                "messageId": f"vle-{i}",
            }
            w.write(json.dumps(event) + "\n")
            n += 1
        with (directory / "studentInfo.csv").open(newline="") as info:
            for row in csv.DictReader(info):
                if row["final_result"] not in ("Pass", "Distinction"):
                    continue
                student = f"s{row['id_student']}"
                w.write(
                    json.dumps(
                        {
                            "type": "track",
                            "event": "Passed",
                            "userId": student,
                            "context": {"groupId": student},
                            "timestamp": _iso(PASSED_DAY),
                            "properties": {"result": row["final_result"]},
                            "messageId": f"passed-{row['id_student']}",
                        }
                    )
                    + "\n"
                )
                n += 1
                passed += 1
    return n, passed


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m streams.io.oulad DATA_DIR OUT.jsonl")
    written, passed = convert(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{written} events ({passed} passed) written to {sys.argv[2]}")
