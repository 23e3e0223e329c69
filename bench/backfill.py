"""How fast a backfill reads the input topic's retention (`streams.app.lifecycle.backfill`): the
bench workload produced to a topic, then the reader alone (the thread the worker starts for a
model with other signals) from the first record until it has caught up, owning every partition.

    python -m bench.backfill [--events 300000] [--accounts 20000] [--broker embedded|kafka]

Reports records/s to caught-up and the accounts whose states it built; the same events through
`pql backtest` give the core's rate on this machine, for scale.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from bench.model_switch import MODEL
from bench.procs import run_main
from bench.workload import events_file
from streams.app.lifecycle.backfill import Backfill, BackfillSource
from streams.broker.child import ChildBroker
from streams.broker.embedded import EmbeddedBroker
from streams.broker.kafka import KafkaBroker
from streams.io.produce import produce_file
from streams.io.topics import TopicSpec, ensure_topics
from streams.model.loader import load_model

PARTITIONS = 4
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    path, lines, days = events_file(args.events, args.accounts, say)
    broker: ChildBroker = EmbeddedBroker() if args.broker == "embedded" else KafkaBroker()
    broker.start()
    try:
        topic = f"bench-backfill-{uuid.uuid4().hex[:8]}"
        ensure_topics(broker.bootstrap, [TopicSpec(topic, PARTITIONS)])
        t = time.monotonic()
        produce_file(broker.bootstrap, [path], topic=topic, partitions=PARTITIONS)
        say(f"produced {lines:,} events in {time.monotonic() - t:.1f} s")
        # Another window for `messages`: what a model change with a backfill reads.
        model = load_model(MODEL)
        reader = Backfill(
            model, BackfillSource(broker.bootstrap, topic), PARTITIONS, set(range(PARTITIONS))
        )
        reader.set_floor(2**62)  # no switch under way: absorb everything read
        t = time.monotonic()
        reader.start()
        if not reader.caught_up.wait(1800):
            raise RuntimeError("the backfill did not catch up in 30 min")
        seconds = time.monotonic() - t
        reader.stop()
        accounts = sum(len(states) for states in reader._states.values())
        say(f"caught up: {reader.records:,} records in {seconds:.1f} s, {accounts:,} accounts")
        return {
            "broker": args.broker,
            "events": lines,
            "days": days,
            "records_read": reader.records,
            "seconds": round(seconds, 1),
            "records_per_s": round(reader.records / seconds),
            "accounts": accounts,
        }
    finally:
        broker.stop()


def table(r: dict[str, Any]) -> str:
    return "\n".join(f"{k:>14}: {v}" for k, v in r.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    args = ap.parse_args()
    return run_main(lambda: run(args), table, say, prefix="backfill-")


if __name__ == "__main__":
    raise SystemExit(main())
