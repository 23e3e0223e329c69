"""Runs cases through whichever core `streams` activated (PQL_ENGINE; `streams.native`) for
the differential test (test_differential.py): `python -m tests.unit.native.runner CASES OUT`.

CASES: JSON lines of {"model": YAML, "events": [event objects]}. OUT: one JSON line per case
with the engine, every transition (less `detected_at`, the wall clock) and every account's
final state as the bytes the worker would write to its table (hex)."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from streams import native
from streams.backtest.runner import Backtest
from streams.model.loader import parse_model

DAY = 86_400_000


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []

    def sink(t: dict[str, Any]) -> None:
        t.pop("detected_at")
        out.append(t)

    disorder = case.get("disorder", 0)
    bt = Backtest(
        parse_model(case["model"]), sink=sink, received_by_ms=None, max_disorder_ms=disorder
    )
    for i, obj in enumerate(case["events"]):
        bt.feed_line(orjson.dumps(obj), i + 1)
    bt.finish(case.get("until"))
    codec = bt.scorer.codec
    states = {a: codec.encode(s).hex() for a, s in sorted(bt.states.items())}
    return {"transitions": out, "states": states, "summary_kinds": bt.summary.kinds}


def main(cases: str, dest: str) -> None:
    with open(cases, "rb") as src, open(dest, "wb") as sink:
        sink.write(orjson.dumps({"engine": native.ENGINE}) + b"\n")
        for line in src:
            sink.write(orjson.dumps(run_case(orjson.loads(line))) + b"\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
