"""A compatible model change applied live to N accounts (default 1M): how long until every
account is decided again under the new version.

    python -m bench.model_switch [--accounts 1000000] [--broker embedded|kafka]

The accounts' state is written straight into the accounts changelog (as `bench.recovery_scale`
does): copies of the states the core builds for the bench workload's accounts, under new ids,
keyed and partitioned as the worker writes them. One worker restores them into an empty data dir
(the input topic stays empty: an idle app, so its partitions report the latest account clock).
Then the model file gets a new version with other rules (the qualify bar and a segment's
threshold; the same signals) and the worker a SIGHUP. Measured from the SIGHUP: until the
switch is agreed (`pql_model_switch_pending` back to 0 after the announcement) and until
`pql_model_switch_accounts_total` reaches N (every account decided again, its transitions sent),
with the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench import recovery_scale
from bench.procs import BenchError, Worker, run_main, stop_all
from bench.run import metric_sum
from bench.workload import events_file
from streams.backtest.replay import history_lines
from streams.backtest.runner import Backtest
from streams.broker.child import ChildBroker
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.broker.kafka import KafkaBroker
from streams.io.topics import TopicSpec, ensure_topics
from streams.model.loader import load_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "team-chat.yaml"
PARTITIONS = 4
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def newer(text: str) -> str:
    """The same signals, other rules, a later version."""
    return (
        text.replace("version: 3 ", "version: 4 ")
        .replace('when: "score >= 100 and employees >= 10"', 'when: "score >= 70"')
        .replace('free_limit_hit: "storage_mb >= 4500"', 'free_limit_hit: "storage_mb >= 2000"')
    )


def source_states(events: int, accounts: int) -> dict[bytes, bytes]:
    """The states the core builds for the bench workload (key bytes as the worker's table)."""
    path, _, _ = events_file(events, accounts, say)
    bt = Backtest(load_model(MODEL), received_by_ms=None)
    for n, line in history_lines([path]):
        bt.feed_line(line, n)
    bt.finish()
    encode = bt.scorer.codec.encode
    return {orjson.dumps(a): encode(s) for a, s in bt.states.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pql-switch-bench-"))
    broker: ChildBroker = (
        KafkaBroker(free_port()) if args.broker == "kafka" else EmbeddedBroker(free_port())
    )
    broker.start(120)
    try:
        bootstrap = broker.bootstrap
        states = source_states(args.events, args.source_accounts)
        say(f"{len(states):,} source states; writing {args.accounts:,} accounts' changelog")
        app_id = f"switch-{uuid.uuid4().hex[:6]}"
        topics = (f"{app_id}-events", f"{app_id}-out", f"{app_id}-dlq")
        ensure_topics(bootstrap, [TopicSpec(t, PARTITIONS) for t in topics])
        written = recovery_scale.write_changelog(
            bootstrap,
            f"{app_id}-state-accounts-changelog",
            states,
            args.accounts,
            PARTITIONS,
            say,
        )
        model = work / "model.yaml"
        model.write_text(MODEL.read_text())
        port = free_port()
        w_args = ["--model", str(model), "--broker", bootstrap, "--app-id", app_id]
        w_args += ["--input-topic", topics[0], "--output-topic", topics[1]]
        w_args += ["--dlq-topic", topics[2], "--data-dir", str(work / "data")]
        w_args += ["--web-port", str(port), "--web-host", "127.0.0.1"]
        w_args += ["--partitions", str(PARTITIONS), "--model-poll", "0"]
        w = Worker("switch", w_args, port, work / "worker.log").start()
        ready = w.wait_ready(timeout=900)
        deadline = time.monotonic() + 600
        while metric_sum(w.metrics(), "pql_state_accounts") < args.accounts:
            if time.monotonic() > deadline:
                raise BenchError("the restored accounts were never all indexed")
            time.sleep(0.5)
        say(f"worker ready after {ready:.1f} s with {args.accounts:,} accounts; switching")
        model.write_text(newer(MODEL.read_text()))
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        agreed = None
        while True:
            w.check()
            m = w.metrics()
            live = [k for k in m if k.startswith("pql_model_info")]
            if agreed is None and any('version="4"' in k for k in live):
                agreed = time.monotonic() - t0
            done = metric_sum(m, "pql_model_switch_accounts_total")
            if done >= args.accounts:
                break
            if time.monotonic() - t0 > 1800:
                raise BenchError(f"only {done:,.0f} accounts switched after 30 min")
            time.sleep(0.2)
        total = time.monotonic() - t0
        rss = w.peak_rss_kib()
        transitions = metric_sum(m, "pql_transitions_total")
        say(f"switched {args.accounts:,} accounts in {total:.1f} s (agreed after {agreed} s)")
        return {
            "broker": args.broker,
            "accounts": args.accounts,
            "distinct_source_states": len(states),
            "changelog_write_s": round(written, 1),
            "ready_s": round(ready, 1),
            "agreed_s": round(agreed, 2) if agreed is not None else None,
            "switched_s": round(total, 1),
            "accounts_per_s": round(args.accounts / total),
            "model_change_transitions": int(transitions),
            "peak_rss_mib": round(rss / 1024, 1),
        }
    finally:
        stop_all()
        broker.stop()


def table(r: dict[str, Any]) -> str:
    return "\n".join(f"{k:>26}: {v}" for k, v in r.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    ap.add_argument("--events", type=int, default=200_000, help="workload events for the states")
    ap.add_argument("--source-accounts", type=int, default=20_000)
    args = ap.parse_args()
    return run_main(lambda: run(args), table, say, prefix="model-switch-")


if __name__ == "__main__":
    raise SystemExit(main())
