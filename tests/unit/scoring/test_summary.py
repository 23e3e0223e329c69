"""The human summary on every transition (`streams.scoring.summary`): golden texts for the seed
examples (examples/*.yaml), each run over the same small history of one account; regenerate
with `python -m tests.unit.scoring.test_summary` after a deliberate change of wording."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.backtest.runner import Backtest
from streams.model.loader import load_model
from streams.model.spec import Model
from streams.scoring.transitions import iso_ms

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).with_name("summaries.golden.json")
T0 = 1_767_225_600_000  # 2026-01-01
H = 3_600_000


def _history(model: Model) -> list[dict[str, Any]]:
    """One account (250 employees, software, DE) with two users; each event a model reads 60
    times, a quarter hour apart, then quiet (so windows empty and exits happen)."""
    out: list[dict[str, Any]] = []

    def add(obj: dict[str, Any]) -> None:
        obj.setdefault("messageId", f"m{len(out)}")
        out.append(obj)

    ts = T0
    traits = {"employees": 250, "industry": "software", "country": "DE"}
    add(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "timestamp": iso_ms(ts),
            "traits": traits,
        }
    )
    add(
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": iso_ms(ts + 1),
            "traits": {"title": "VP Sales"},
        }
    )
    add(
        {
            "type": "group",
            "userId": "u2",
            "groupId": "acme",
            "timestamp": iso_ms(ts + 2),
            "traits": {},
        }
    )
    names = sorted({e for s in model.signals if s.events for e in s.events})
    for i in range(60):
        for j, name in enumerate(names):
            ts += H // 4
            props = {"participants": 6 if i % 2 else 2, "size_mb": 120.5}
            user = "u1" if (i + j) % 3 else "u2"
            add(
                {
                    "type": "track",
                    "event": name,
                    "userId": user,
                    "timestamp": iso_ms(ts),
                    "properties": props,
                }
            )
    return out


def summaries(path: Path) -> list[list[Any]]:
    """The first summary of each (kind, segment), in order."""
    model = load_model(path)
    got: list[dict[str, Any]] = []
    bt = Backtest(model, sink=got.append, received_by_ms=None, now_ms=lambda: 0)
    for i, e in enumerate(_history(model)):
        bt.feed_line(json.dumps(e).encode(), i + 1)
    bt.finish(T0 + 60 * 24 * H)
    seen: dict[tuple[str, str | None], str] = {}
    for t in got:
        seen.setdefault((t["kind"], t["segment"]), t["summary"])
    return [[kind, segment, text] for (kind, segment), text in seen.items()]


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden_summaries_of_the_seed_examples(path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert summaries(path) == golden[path.name]


if __name__ == "__main__":
    GOLDEN.write_text(
        json.dumps({p.name: summaries(p) for p in EXAMPLES}, indent=1, ensure_ascii=False) + "\n"
    )
    sys.exit(0)
