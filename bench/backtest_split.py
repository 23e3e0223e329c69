"""Micro-benchmark: where `pql backtest`'s time goes, per stage, on one events file (not a test).

    .venv/bin/python bench/backtest_split.py FILE [--model PATH]

Reads FILE (JSONL) into memory, then times, each over every line: `orjson.loads`; `parse_event`
(with its validation); parse + route (`Router.route`, the resolver the worker shares); the same
plus re-encoding each delivery as the worker forwards it (`encode_event`); and the whole
backtest (`Backtest.feed_line` + `finish`). Prints lines/s and microseconds per line for each.
The gaps between rows are what each stage costs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.backtest.runner import Backtest  # noqa: E402
from streams.events.codec import encode_event  # noqa: E402
from streams.events.parse import parse_event  # noqa: E402
from streams.events.routing import Router  # noqa: E402
from streams.events.types import Reject  # noqa: E402
from streams.gc_tuning import tune_gc  # noqa: E402
from streams.model.loader import load_model  # noqa: E402
from streams.model.spec import Model  # noqa: E402


def stages(model: Model) -> list[tuple[str, Callable[[list[bytes]], None]]]:
    traits = Backtest(model).scorer.plan.user_traits

    def loads(lines: list[bytes]) -> None:
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):  # the simulator's bad lines
                orjson.loads(line)

    def parse(lines: list[bytes]) -> None:
        for line in lines:
            parse_event(line)

    def route(lines: list[bytes], encode: bool = False) -> None:
        router = Router(traits)
        for line in lines:
            ev = parse_event(line)
            if isinstance(ev, Reject):
                continue
            deliveries, _ = router.route(ev)
            if encode:
                for _, delivered in deliveries:
                    encode_event(delivered)

    def backtest(lines: list[bytes]) -> None:
        bt = Backtest(model)
        for n, line in enumerate(lines, 1):
            bt.feed_line(line, n)
        bt.finish()

    return [
        ("orjson.loads", loads),
        ("parse_event", parse),
        ("parse + route", route),
        ("... + encode", lambda lines: route(lines, encode=True)),
        ("whole backtest", backtest),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--model", default=str(ROOT / "examples" / "team-chat.yaml"))
    args = ap.parse_args()
    lines = [line for line in Path(args.file).read_bytes().splitlines() if line.strip()]
    tune_gc()  # as `pql backtest` does
    print(f"{len(lines):,} lines of {args.file}")
    for label, run in stages(load_model(args.model)):
        started = time.perf_counter()
        run(lines)
        elapsed = time.perf_counter() - started
        per_line_us = elapsed / len(lines) * 1e6
        print(f"{label:16s} {len(lines) / elapsed:>10,.0f} lines/s {per_line_us:7.2f} us")


if __name__ == "__main__":
    main()
