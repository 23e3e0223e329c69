"""Benchmark: `pql backtest` throughput on simulated traffic (not a test).

    .venv/bin/python bench/backtest_bench.py [--events N] [--runs R] [--model PATH] [--file PATH]

Uses --file if given, else /tmp/pql-bench/events-<N>.jsonl, generating it once with
`pql simulate --accounts 2000 --days 30 --seed 3` and keeping its first N lines (default
300,000). Then replays it through `run_backtest` (parse, routing, scoring, summary; no
transitions written) R times (default 3) and prints one JSON object: the median and every run's
events/s, where events/s = lines read / wall seconds of the replay, as the report's
`events_per_second`. The machine it runs on matters: note its load when quoting a number.

`--jobs N`: sharded over N processes (`pql backtest --jobs`). The engine is `streams.native`'s
choice (PQL_ENGINE=python|compiled|auto) and is printed with the result. Transitions go to a
sink that drops them (so a sharded run pays for merging them, as `--out` would).

`--shadows K`: K shadow models run beside the live one from the start (`pql backtest --shadow`;
the same signals, each a later version with its qualify bar 10 points lower than the last):
what shadows cost the core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import native  # noqa: E402
from streams.backtest.replay import run_backtest  # noqa: E402
from streams.gc_tuning import tune_gc  # noqa: E402
from streams.model.loader import load_model, parse_model  # noqa: E402
from streams.model.spec import Model  # noqa: E402
from streams.scoring.shadow import ShadowStart  # noqa: E402


def events_file(n: int) -> Path:
    out = Path("/tmp/pql-bench") / f"events-{n}.jsonl"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    full = out.parent / "simulated-2000x30-seed3.jsonl"
    if not full.exists():
        pql = ROOT / ".venv" / "bin" / "pql"
        cmd = [str(pql) if pql.exists() else "pql", "simulate", "--accounts", "2000"]
        cmd += ["--days", "30", "--seed", "3", "--out", str(full)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    tmp = out.with_suffix(".part")
    with full.open("rb") as src, tmp.open("wb") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    tmp.rename(out)
    return out


def candidate(model: Model, k: int) -> Model:
    """`model` with a later version and each `score >= N` bar 10*k points lower."""
    text = Path(str(model.source_path)).read_text()
    text = re.sub(r"(?m)^version: *(\d+)", f"version: {model.version + k}", text, count=1)
    text = re.sub(r"score >= (\d+)", lambda m: f"score >= {int(m.group(1)) - 10 * k}", text)
    return parse_model(text, source=f"{model.source_path} (shadow {k})")


def _drop(t: dict[str, Any]) -> None:
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default=str(ROOT / "examples" / "team-chat.yaml"))
    ap.add_argument("--file", default=None)
    ap.add_argument("--shadows", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="processes (pql backtest --jobs)")
    args = ap.parse_args()
    path = Path(args.file) if args.file else events_file(args.events)
    model = load_model(args.model)
    shadows = [ShadowStart(0, candidate(model, i + 1)) for i in range(args.shadows)]
    tune_gc()  # as `pql backtest` does
    rates: list[float] = []
    lines = 0
    for _ in range(args.runs):
        started = time.perf_counter()
        summary = run_backtest(
            model, [path], sink=_drop, shadows=shadows, shadow_sink=_drop, jobs=args.jobs
        )
        elapsed = time.perf_counter() - started
        lines = summary["events_read"]
        rates.append(lines / elapsed)
    print(
        json.dumps(
            {
                "file": str(path),
                "model": args.model,
                "events": lines,
                "events_applied": summary["events_applied"],
                "engine": native.ENGINE,
                "jobs": args.jobs,
                "runs": len(rates),
                "shadows": args.shadows,
                "median_events_per_second": round(statistics.median(rates)),
                "events_per_second": [round(r) for r in rates],
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
