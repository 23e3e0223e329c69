"""A Quix Streams job doing PQL-like work, the reference point of issue 5 (see bench/README.md).

Runs in the separate quix venv (`.venv/bench-quix`, bench/requirements-quix.txt), started by
`bench/quix_bench.py`; it imports only quixstreams and the standard library, not `streams`.

Per account (the record key, as `pql produce` writes it), in one Quix state store (RocksDB,
changelogged): daily buckets of "Message Sent" and "Invite Sent" over 30 days, the day each user
was last active (seats = distinct users over 7 days), "Onboarding Completed" ever, the
`employees` trait of group calls; the score of examples/team-chat.yaml (30 onboarded, 40 for
messages >= 5, 50 for invites >= 1, 5 per 100 messages up to 40); qualify at score >= 100 and
employees >= 10, disqualify below 80 (hysteresis); a transition record to the output topic only
when the status changes.

Progress: one JSON line on stdout every `--progress-every` s,
`{"processed": N, "t": <time.monotonic()>}` (CLOCK_MONOTONIC: comparable across processes on
the same machine), and a last line with `"done": true`, the monotonic time of the first and of
the last event processed and of the end of the run (after Quix's final checkpoint: state and
transitions flushed, offsets committed). Stops after `--events` events or after `--idle-timeout`
s without a new message (Quix's own `timeout`), or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from typing import Any

from quixstreams import Application, State

MESSAGES_WINDOW_DAYS = 30
SEATS_WINDOW_DAYS = 7
QUALIFY_SCORE = 100
EXIT_SCORE = 80
MIN_EMPLOYEES = 10
COUNTED = {"Message Sent": "msg", "Invite Sent": "inv"}  # event -> daily buckets

AccountState = State[str, dict[str, Any]]  # one key per account: "account" -> its state

_day_cache: dict[str, int] = {}


def day_of(timestamp: str) -> int:
    """Proleptic ordinal of the ISO-8601 timestamp's UTC date (the buckets' key)."""
    date = timestamp[:10]
    day = _day_cache.get(date)
    if day is None:
        day = _day_cache[date] = dt.date.fromisoformat(date).toordinal()
    return day


def new_account() -> dict[str, Any]:
    # JSON-serialised by the state store: bucket keys are strings.
    return {"now": 0, "msg": {}, "inv": {}, "seen": {}, "onb": 0, "emp": 0, "pql": False}


def score_of(messages: int, invites: int, onboarded: int) -> int:
    score = 30 * onboarded
    score += 40 if messages >= 5 else 0
    score += 50 if invites >= 1 else 0
    return score + min(40, 5 * (messages // 100))


def expire(s: dict[str, Any], day: int) -> None:
    """Drop message/invite buckets older than 30 days and users not seen in 7 days."""
    oldest = day - MESSAGES_WINDOW_DAYS
    for buckets in (s["msg"], s["inv"]):
        for k in [k for k in buckets if int(k) <= oldest]:
            del buckets[k]
    seen = s["seen"]
    for u in [u for u, d in seen.items() if d <= day - SEATS_WINDOW_DAYS]:
        del seen[u]


def apply_event(account: str, ev: dict[str, Any], s: dict[str, Any]) -> dict[str, Any] | None:
    """Update `account`'s state `s` with one event; the transition record if the status changed.
    Windows end at the latest event time seen for the account (late events count if still in)."""
    ts = ev.get("timestamp")
    if not isinstance(ts, str):
        return None
    day = day_of(ts)
    if day > s["now"]:
        s["now"] = day
        expire(s, day)
    now = s["now"]
    user = ev.get("userId")
    if user and day > now - SEATS_WINDOW_DAYS and s["seen"].get(user, -1) < day:
        s["seen"][user] = day
    kind = ev.get("type")
    if kind == "track":
        name = ev.get("event")
        if name == "Onboarding Completed":
            s["onb"] = 1
        elif name in COUNTED and day > now - MESSAGES_WINDOW_DAYS:
            bucket = s[COUNTED[name]]
            bucket[str(day)] = bucket.get(str(day), 0) + 1
    elif kind == "group":
        employees = (ev.get("traits") or {}).get("employees")
        if isinstance(employees, int | float):
            s["emp"] = employees
    messages = sum(s["msg"].values())
    score = score_of(messages, sum(s["inv"].values()), s["onb"])
    was = s["pql"]
    if not was and score >= QUALIFY_SCORE and s["emp"] >= MIN_EMPLOYEES:
        s["pql"] = True
    elif was and score < EXIT_SCORE:
        s["pql"] = False
    if s["pql"] == was:
        return None
    return {
        "account_id": account,
        "status": "pql" if s["pql"] else "not_pql",
        "score": score,
        "messages_30d": messages,
        "seats_7d": len(s["seen"]),
        "employees": s["emp"],
        "at": ts,
        "message_id": ev.get("messageId"),
    }


class Progress:
    """Counts processed events; a thread prints the count every `every` s."""

    def __init__(self, target: int, every: float) -> None:
        self.target = target
        self.every = every
        self.count = 0
        self.transitions = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _report(self) -> None:
        while not self._stop.wait(self.every):
            emit({"processed": self.count, "t": time.monotonic()})


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--input-topic", required=True)
    ap.add_argument("--output-topic", required=True)
    ap.add_argument("--group", required=True, help="consumer group (fresh: read from the start)")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--events", type=int, required=True, help="stop after this many events")
    ap.add_argument("--idle-timeout", type=float, default=30.0)
    ap.add_argument("--progress-every", type=float, default=0.5)
    ap.add_argument("--fetch-wait-ms", type=int, default=20, help="embedded broker: keep short")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
        consumer_extra_config={
            "fetch.wait.max.ms": args.fetch_wait_ms,
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(500, args.session_timeout_ms // 3),
        },
    )
    source = app.topic(args.input_topic, value_deserializer="json")
    sink = app.topic(args.output_topic, value_serializer="json")
    progress = Progress(args.events, args.progress_every)

    def process(
        ev: dict[str, Any], key: bytes | None, _ts: int, _headers: Any, state: AccountState
    ) -> dict[str, Any] | None:
        now = time.monotonic()
        if progress.t_first is None:
            progress.t_first = now
        s = state.get("account") or new_account()
        out = apply_event(key.decode() if key else "", ev, s)
        state.set("account", s)
        progress.count += 1
        progress.transitions += out is not None
        progress.t_last = now
        if progress.count >= progress.target:
            app.stop()  # the loop ends after this message; Quix then commits a checkpoint
        return out

    sdf = app.dataframe(source)
    sdf = sdf.apply(process, stateful=True, metadata=True).filter(lambda out: out is not None)
    sdf.to_topic(sink)

    emit({"started": True, "t": time.monotonic()})
    progress.start()
    try:
        app.run(timeout=args.idle_timeout, collect=False)
    finally:
        progress.close()
    emit(
        {
            "done": True,
            "processed": progress.count,
            "target": args.events,
            "transitions": progress.transitions,
            "t_first": progress.t_first,
            "t_last": progress.t_last,
            "t_done": time.monotonic(),
        }
    )
    return 0 if progress.count >= args.events else 2


if __name__ == "__main__":
    sys.exit(main())
