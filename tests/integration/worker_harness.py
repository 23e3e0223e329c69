"""Helpers for the worker integration tests: real `pql worker` processes on the session broker.

Every test gets its own names (`WorkerNames`: app id = consumer group and prefix of the internal
topics, input/output/DLQ topics), so tests share the one embedded broker without seeing each
other's records. A worker runs as `python -m streams.cli worker ...` in its own process group
with its log in a file; `WorkerProc.stop()` (SIGTERM, then SIGKILL) always runs in the tests'
`finally`/fixture teardown, and `assert_no_stray_processes` checks nothing was left behind.

Transitions are read with an assign-only confluent consumer (no group join, no offsets left
behind), which keeps polling across the phases of a test (`TopicReader`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.broker.embedded import free_port
from streams.io.kafka_config import consumer_config
from streams.io.produce import ProduceStats, produce_file
from streams.io.topics import TopicSpec, ensure_topics

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SEEDS = REPO / "tests" / "data" / "seeds"
TRANSITION_SCHEMA = REPO / "schemas" / "pql-transition.schema.json"
PARTITIONS = 4
SESSION_TIMEOUT_S = 6.0
READY_TIMEOUT_S = 60.0

# What two transitions must agree on to be "the same transition" (detected_at is wall clock).
COMPARED = (
    "transition_id",
    "kind",
    "segment",
    "account_id",
    "occurred_at",
    "score",
    "trigger",
    "message_id",
)

Key = tuple[Any, ...]


def transition_key(t: dict[str, Any]) -> Key:
    return tuple(t[f] for f in COMPARED)


def without_detected_at(t: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in t.items() if k != "detected_at"}


# -- names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerNames:
    """Unique names for one test's pipeline."""

    app_id: str
    input_topic: str
    output_topic: str
    dlq_topic: str

    @classmethod
    def unique(cls, tag: str) -> WorkerNames:
        u = f"{tag}-{uuid.uuid4().hex[:8]}"
        return cls(f"wt-{u}", f"wt-{u}-in", f"wt-{u}-out", f"wt-{u}-dlq")

    def create_topics(self, bootstrap: str) -> None:
        """Create the external topics up front (same counts the worker uses), so readers and
        producers can attach before the worker is up without auto-creating anything."""
        ensure_topics(
            bootstrap,
            [
                TopicSpec(name, PARTITIONS)
                for name in (self.input_topic, self.output_topic, self.dlq_topic)
            ],
        )


# -- worker processes --------------------------------------------------------------------------


@dataclass
class WorkerProc:
    """One `pql worker` subprocess (own process group), log in `log_path`."""

    bootstrap: str
    model: Path
    names: WorkerNames
    data_dir: Path
    log_path: Path
    web_port: int = field(default_factory=free_port)
    advance_idle_s: float = 0.0
    idle_timeout_s: float = 3.0
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)  # e.g. PQL_* settings (others are cleared)
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def settle(self) -> float:
        """Quiet seconds after which nothing more is coming: the last events are released when
        their input partitions turn idle (`idle_timeout_s`), an account is advanced by stream
        time only after `advance_idle_s`, plus the idle hold (1 s) of each of the two stages
        and a margin for the hops."""
        return self.idle_timeout_s + 2.0 + self.advance_idle_s + 1.5

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def args(self) -> list[str]:
        n = self.names
        return [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--model",
            str(self.model),
            "--broker",
            self.bootstrap,
            "--app-id",
            n.app_id,
            "--input-topic",
            n.input_topic,
            "--output-topic",
            n.output_topic,
            "--dlq-topic",
            n.dlq_topic,
            "--data-dir",
            str(self.data_dir),
            "--web-port",
            str(self.web_port),
            "--web-host",
            "127.0.0.1",
            "--partitions",
            str(PARTITIONS),
            "--session-timeout",
            str(SESSION_TIMEOUT_S),
            "--advance-idle",
            str(self.advance_idle_s),
            "--idle-timeout",
            str(self.idle_timeout_s),
            *self.extra_args,
        ]

    def start(self) -> WorkerProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        self._log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PQL_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            self.args(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll GET /readyz until 200; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise AssertionError(f"worker exited with {self.returncode()}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = self.get("/readyz", timeout=1.0)
                if status == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, status
        return body.decode()

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
        """Send `sig` to the worker's process group; SIGKILL it if it outlives `grace`.
        Returns the exit code (None if it never ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(10)
        # the group may hold children (none expected); make sure nothing survives
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL, grace=10.0)

    def wait_log(self, pattern: str | re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        """The first match of `pattern` (a regex) in the worker's log, once it is there."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = regex.search(self.log_path.read_text(errors="replace"))
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"{regex.pattern!r} not logged:\n{self.log_tail(40)}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Workers:
    """Factory + registry so a fixture can stop every worker a test started."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.started: list[WorkerProc] = []
        self.readers: list[TopicReader] = []

    def reader(self, topic: str) -> TopicReader:
        """A `TopicReader` closed at teardown."""
        r = TopicReader(self.bootstrap, topic)
        self.readers.append(r)
        return r

    def new(
        self,
        model: Path,
        names: WorkerNames,
        name: str = "w1",
        data_dir: Path | None = None,
        **kwargs: Any,
    ) -> WorkerProc:
        w = WorkerProc(
            bootstrap=self.bootstrap,
            model=model,
            names=names,
            data_dir=data_dir or (self.tmp / f"{name}-data"),
            log_path=self.tmp / f"{name}.log",
            **kwargs,
        )
        self.started.append(w)
        return w

    def start(self, *args: Any, **kwargs: Any) -> WorkerProc:
        w = self.new(*args, **kwargs).start()
        w.wait_ready()
        return w

    def stop_all(self) -> None:
        for r in self.readers:
            with contextlib.suppress(Exception):
                r.close()
        for w in self.started:  # all at once: each takes a second or two to stop
            w.send_signal(signal.SIGTERM)
        for w in self.started:
            w.stop()
        pgids = [w.proc.pid for w in self.started if w.proc is not None]
        assert_no_stray_processes(pgids)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def assert_no_stray_processes(pgids: Iterable[int], wait_s: float = 5.0) -> None:
    """Every process of these groups (a worker and its ingest process) is gone; killed ones
    get `wait_s` to be reaped."""
    deadline = time.monotonic() + wait_s
    alive = [pgid for pgid in pgids if _group_alive(pgid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pgid for pgid in alive if _group_alive(pgid)]
    assert not alive, f"worker process groups still alive: {alive}"


# -- produce / consume -------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, *paths: Path, rate: float | None = None) -> ProduceStats:
    """`pql produce`'s function: each line keyed by its resolved account (murmur2); `rate`
    paces it (events/s) so a stream is still flowing while a test restarts the worker."""
    return produce_file(bootstrap, list(paths), topic=topic, partitions=PARTITIONS, rate=rate)


def ready_then_produce(bootstrap: str, runs: Iterable[Any]) -> None:
    """Wait until every run's worker is ready, then produce each run's events (`run.events`
    to `run.names.input_topic`), recording how many lines went in as `run.lines`."""
    runs = list(runs)
    for run in runs:
        run.worker.wait_ready()
    for run in runs:
        run.lines = produce(bootstrap, run.names.input_topic, run.events).read


def produce_in_background(
    bootstrap: str, topic: str, *paths: Path, rate: float
) -> threading.Thread:
    """`produce` at `rate` in a thread (join it before asserting on the whole input)."""
    thread = threading.Thread(
        target=produce, args=(bootstrap, topic, *paths), kwargs={"rate": rate}, daemon=True
    )
    thread.start()
    return thread


def produce_raw(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Records with exactly the given key and value bytes (for input `pql produce` would key)."""
    from confluent_kafka import Producer

    from streams.io.kafka_config import producer_config

    p = Producer(producer_config(bootstrap))
    for key, value in records:
        p.produce(topic, value=value, key=key)
    assert p.flush(30) == 0


@dataclass
class Record:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int

    def json(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.value)
        return obj


class TopicReader:
    """Reads every partition of a topic from the beginning (assign, no group), accumulating
    records across calls so one reader can follow a test through several phases."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        conf = consumer_config(bootstrap, None)
        conf["group.id"] = f"wt-reader-{uuid.uuid4().hex[:8]}"
        self.consumer = Consumer(conf)
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.records: list[Record] = []
        self.last_record_at = time.monotonic()

    def poll(self, seconds: float) -> int:
        """Poll for up to `seconds`; returns how many records arrived."""
        n = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.consumer.poll(min(left, 0.2))
            if msg is None:
                continue
            if msg.error() is not None:
                continue
            self.records.append(
                Record(
                    key=msg.key(),
                    value=msg.value() or b"",
                    headers={k: v or b"" for k, v in (msg.headers() or [])},
                    partition=msg.partition() or 0,
                    offset=msg.offset() or 0,
                )
            )
            self.last_record_at = time.monotonic()
            n += 1
        return n

    def wait_for(
        self,
        done: Callable[[list[Record]], bool],
        timeout: float,
        settle: float = 0.0,
        give_up_idle: float | None = None,
    ) -> bool:
        """Poll until `done(records)`, then keep reading until nothing arrived for `settle`
        seconds (to catch records that should NOT come). Gives up (False) at `timeout`, or
        once nothing arrived for `give_up_idle` seconds (when the caller knows the producer
        side is finished)."""
        started = time.monotonic()
        deadline = started + timeout
        ok = done(self.records)
        while not ok and time.monotonic() < deadline:
            self.poll(0.3)
            ok = done(self.records)
            quiet = time.monotonic() - max(self.last_record_at, started)
            if give_up_idle is not None and quiet >= give_up_idle:
                break
        if ok and settle > 0:
            settle_deadline = time.monotonic() + max(settle * 4, 10.0)
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < settle and time.monotonic() < settle_deadline:
                if self.poll(0.3):
                    quiet_since = time.monotonic()
        return ok

    def transitions(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.records]

    def close(self) -> None:
        self.consumer.close()


def wait_for_ids(
    reader: TopicReader, ids: set[str], timeout: float, settle: float
) -> list[dict[str, Any]]:
    """Read transitions until every id in `ids` arrived (or timeout), then `settle` seconds of
    quiet to catch unexpected extras. Returns everything read so far."""

    def done(records: list[Record]) -> bool:
        seen = {r.json()["transition_id"] for r in records}
        return ids <= seen

    reader.wait_for(done, timeout, settle)
    return reader.transitions()


# -- backtest ----------------------------------------------------------------------------------


def backtest(
    model: Path, *events: Path, out_dir: Path, extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """`pql backtest --out` (the real command) over `events`; the transitions it wrote.
    `extra`: more options (e.g. `--switch-model TIME=FILE`)."""
    out = out_dir / f"backtest-{uuid.uuid4().hex[:6]}.jsonl"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "backtest",
            "--model",
            str(model),
            "--out",
            str(out),
            "--quiet",
            *extra,
            *map(str, events),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def diff_report(worker: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """A readable explanation of how two transition lists differ (for assertion messages)."""
    got = {transition_key(t) for t in worker}
    want = {transition_key(t) for t in expected}
    lines = []
    missing = sorted(want - got, key=lambda k: (k[3], k[4]))
    extra = sorted(got - want, key=lambda k: (k[3], k[4]))
    if missing:
        lines.append(f"{len(missing)} backtest transitions missing from the worker:")
        lines += [f"  - {dict(zip(COMPARED, k, strict=True))}" for k in missing[:25]]
    if extra:
        lines.append(f"{len(extra)} worker transitions not in the backtest:")
        lines += [f"  + {dict(zip(COMPARED, k, strict=True))}" for k in extra[:25]]
    return "\n".join(lines) or "identical"


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Prometheus text -> {label string: value} for one metric name."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head == name or head.startswith(name + "{"):
            out[head[len(name) :]] = float(value)
    return out


def write_jsonl(path: Path, events: Iterable[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for ev in events:
            f.write((ev if isinstance(ev, str) else json.dumps(ev, separators=(",", ":"))) + "\n")
    return path


def write_parts(tmp: Path, events: Sequence[dict[str, Any]], parts: int) -> list[Path]:
    """`events` cut into `parts` consecutive files of (nearly) equal size: part1.jsonl, ..."""
    size = len(events) // parts
    cuts = [i * size for i in range(parts)] + [len(events)]
    return [
        write_jsonl(tmp / f"part{i + 1}.jsonl", events[cuts[i] : cuts[i + 1]]) for i in range(parts)
    ]


def name_accounts(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with `context.groupId` set on every track/page/screen/identify call that names
    no account, resolved the way `pql produce` and the backtest do (the user's latest group
    call), so every event of an account can go straight to it in input order (README: "Send
    `context.groupId` on every call for exact parity")."""
    from streams.events.parse import parse_event
    from streams.events.resolver import AccountResolver
    from streams.events.types import Reject

    resolver = AccountResolver()
    out = []
    for ev in events:
        parsed = parse_event(json.dumps(ev).encode())
        account = None if isinstance(parsed, Reject) else resolver.resolve(parsed)
        if (
            ev.get("type") in ("track", "page", "screen", "identify")
            and not (ev.get("context") or {}).get("groupId")
            and isinstance(account, str)
            and account
        ):
            ev = {**ev, "context": {**(ev.get("context") or {}), "groupId": account}}
        out.append(ev)
    return out


def consumed(worker: WorkerProc, topic: str) -> float:
    """`pql_events_consumed_total` of `topic` on a running worker."""
    samples = metric_samples(worker.metrics(), "pql_events_consumed_total")
    return sum(v for labels, v in samples.items() if f'"{topic}"' in labels)


def wait_consumed(workers: Sequence[WorkerProc], topic: str, n: int, timeout: float) -> None:
    """Until the workers together read at least `n` records of `topic` (since they started)."""
    deadline = time.monotonic() + timeout
    total = 0.0
    while time.monotonic() < deadline:
        total = 0.0
        for w in workers:
            with contextlib.suppress(OSError):
                total += consumed(w, topic)
        if total >= n:
            return
        time.sleep(0.3)
    logs = "\n".join(w.log_tail(15) for w in workers)
    raise AssertionError(f"workers read {total:.0f} of {n} records of {topic}:\n{logs}")


def collect(
    reader: TopicReader,
    expected: list[dict[str, Any]],
    timeout: float,
    settle: float,
    give_up_idle: float | None = None,
) -> list[dict[str, Any]]:
    """Read until every expected transition id arrived, then `settle` seconds of quiet to catch
    extras; if they do not all arrive, stop after `give_up_idle` (default `settle`) seconds
    without any record (call it once the worker has read all its input: by then a missing
    transition is not coming). A worker recovering after a crash can be quiet for longer."""
    want = {t["transition_id"] for t in expected}

    def done(records: list[Record]) -> bool:
        return want <= {r.json()["transition_id"] for r in records}

    idle = settle if give_up_idle is None else give_up_idle
    reader.wait_for(done, timeout, settle, give_up_idle=idle)
    return reader.transitions()


def assert_same_as_backtest(
    got: list[dict[str, Any]], expected: list[dict[str, Any]], label: str = "worker"
) -> None:
    """The worker's transitions are the backtest's: the same compared fields (ids included),
    then the whole payload apart from detected_at (reasons, signals, condition values)."""
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, (
        f"{label}: worker != backtest\n{diff_report(got, expected)}"
    )
    differing = payload_diffs(got, expected, limit=0)
    assert not differing, f"{len(differing)} payloads differ:\n" + "\n".join(differing[:15])


def schema_validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(TRANSITION_SCHEMA.read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_duplicates_identical(transitions: list[dict[str, Any]]) -> int:
    """Every transition_id maps to one payload (ignoring detected_at); returns how many
    records were re-emissions."""
    by_id: dict[str, dict[str, Any]] = {}
    dupes = 0
    for t in transitions:
        body = without_detected_at(t)
        first = by_id.setdefault(t["transition_id"], body)
        if first is not body:
            dupes += 1
            assert body == first, f"same transition_id, different payloads:\n{first}\n{body}"
    return dupes


@pytest.fixture()
def workers(broker: Any, tmp_path: Path) -> Iterator[Workers]:
    """Start workers with `workers.start(model, names, name=...)`; all are stopped (SIGTERM,
    then SIGKILL) at teardown, and none may survive."""
    ws = Workers(broker.bootstrap, tmp_path)
    try:
        yield ws
    finally:
        ws.stop_all()


def payload_diffs(
    got: list[dict[str, Any]], expected: list[dict[str, Any]], limit: int = 10
) -> list[str]:
    """For transitions with the same id in both lists, the fields whose values differ (nested
    one level for dicts such as `signals`), ignoring detected_at."""
    want = {t["transition_id"]: without_detected_at(t) for t in expected}
    out: list[str] = []
    seen: set[str] = set()
    for t in got:
        tid = t["transition_id"]
        w = want.get(tid)
        if w is None or tid in seen:
            continue
        seen.add(tid)
        g = without_detected_at(t)
        diffs = []
        for k in sorted(set(g) | set(w)):
            a, b = g.get(k), w.get(k)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                for kk in sorted(set(a) | set(b)):
                    if a.get(kk) != b.get(kk):
                        diffs.append(f"{k}.{kk}: worker {a.get(kk)!r} backtest {b.get(kk)!r}")
            else:
                diffs.append(f"{k}: worker {a!r} backtest {b!r}")
        if diffs:
            out.append(
                f"{tid} {g['account_id']} {g['kind']} {g['segment']} {g['occurred_at']}: "
                + "; ".join(diffs)
            )
    return out[:limit] if limit else out


def wait_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout: float
) -> None:
    """Until `group` has committed offset `ends[p]` on every partition p of `topic` (the end
    offsets are known from what was produced: the embedded broker's own "latest offset" is
    wrong for multi-record batches, see the shared notes)."""
    conf = consumer_config(bootstrap, group)
    consumer = Consumer(conf)
    try:
        deadline = time.monotonic() + timeout
        got: dict[int, int] = {}
        while time.monotonic() < deadline:
            tps = consumer.committed(
                [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5
            )
            got = {tp.partition: tp.offset for tp in tps}
            if all(got.get(p, -1) >= n for p, n in ends.items()):
                return
            time.sleep(0.5)
        raise AssertionError(f"committed {got}, wanted {ends}")
    finally:
        consumer.close()
