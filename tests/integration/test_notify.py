"""`pql notify` against a local HTTP server that fails (issue 15 item 4): 500s, timeouts after
the request was processed, 429 with Retry-After, and a transition the webhook always refuses.

Real transitions (a backtest of examples/team-chat.yaml over simulated history, so they carry
summaries and playbooks) go to a topic on a real broker, every fifth one twice, as a restarting
worker re-emits them. `pql notify` runs as a process with a webhook (signed) and a Slack
destination. Then it is stopped, the second half and every first-half transition again are
produced, and it runs again. From the server's point of view:

- the webhook processed every transition exactly once (by Idempotency-Key, as a receiver that
  stores the keys it processed does), every request validly signed, except the always-refused
  ones, which are in the dead-letter topic after --attempts;
- Slack got every alert exactly once (Slack has no idempotency key: the scripted Slack failures
  are ones where nothing was processed);
- the metrics count the deliveries, the retries by cause and the dead letters.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streams.io.simulate import generate
from streams.io.topics import TopicSpec, ensure_topics
from streams.notify.messages import verify
from streams.notify.routes import is_alert
from tests.integration.worker_harness import (
    EXAMPLES,
    REPO,
    TopicReader,
    backtest,
    metric_samples,
    produce_raw,
    write_jsonl,
)

SECRET = "s3cret"
TIMEOUT_S = 0.5  # notify's request timeout; the "slow" script answers after 1.5 s
ATTEMPTS = 3
N = 48  # transitions (a few seconds of scripted waits each phase)


def script(tid: str, path: str) -> str:
    """What the server does with a transition: deterministic per id and path."""
    h = int(hashlib.sha256(f"{path}:{tid}".encode()).hexdigest(), 16) % 10
    if path == "/hook":
        return ["ok", "ok", "ok", "500_once", "500_once", "slow_processed", "slow_processed",
                "429_once", "429_once", "always_500"][h]  # fmt: skip
    return ["ok", "ok", "ok", "ok", "500_once", "500_once", "429_once", "429_once",
            "slow_unprocessed", "ok"][h]  # fmt: skip


class Receiver:
    """The server's memory: every request, and what it processed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.processed: Counter[tuple[str, str]] = Counter()  # (path, transition id)
        self.bad_signatures: list[str] = []


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = self.path
            if path == "/hook":
                tid = self.headers.get("Idempotency-Key", "")
                ok_sig = verify(
                    SECRET,
                    self.headers.get("X-PQL-Timestamp", ""),
                    body,
                    self.headers.get("X-PQL-Signature", ""),
                )
                if not ok_sig or json.loads(body)["transition_id"] != tid:
                    rx.bad_signatures.append(tid)
            else:
                tid = _slack_tid(json.loads(body))
            with rx.lock:
                rx.attempts[(path, tid)] += 1
                n = rx.attempts[(path, tid)]
                rx.requests.append({"path": path, "tid": tid, "n": n, "at": time.time()})
            what = script(tid, path)
            if what == "always_500" or (what == "500_once" and n == 1):
                return self._reply(500, b"boom")
            if what == "429_once" and n == 1:
                return self._reply(429, b"slow down", {"Retry-After": "1"})
            if what == "slow_processed" and n == 1:
                self._process(path, tid)  # processed, but the answer comes too late
                time.sleep(TIMEOUT_S * 3)
                return self._reply(200, b"ok")
            if what == "slow_unprocessed" and n == 1:
                time.sleep(TIMEOUT_S * 3)
                return self._reply(503, b"gave up")
            self._process(path, tid)
            self._reply(200, b"ok")

        def _process(self, path: str, tid: str) -> None:
            with rx.lock:
                # A receiver keyed by Idempotency-Key processes each key once; Slack has none.
                if path != "/hook" or rx.processed[(path, tid)] == 0:
                    rx.processed[(path, tid)] += 1

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the slow scripts)

    return Handler


def _slack_tid(message: dict[str, Any]) -> str:
    """The transition id in the Block Kit message's footer."""
    footer = message["blocks"][-1]["elements"][0]["text"]
    return footer.rsplit(" · ", 1)[-1]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    rx = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_notify(bootstrap: str, topic: str, port: int, metrics_port: int, log: Path) -> Any:
    env = dict(
        os.environ,
        PQL_NOTIFY_BROKER=bootstrap,
        PQL_NOTIFY_SECRET=SECRET,  # every option is also PQL_NOTIFY_*
        PQL_NOTIFY_ATTEMPTS=str(ATTEMPTS),
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "notify",
            "--topic",
            topic,
            "--webhook",
            f"http://127.0.0.1:{port}/hook",
            "--slack-webhook",
            f"http://127.0.0.1:{port}/slack",
            "--group",
            f"{topic}-notify",
            "--from-beginning",
            "--backoff",
            "0.05",
            "--backoff-max",
            "0.2",
            "--timeout",
            str(TIMEOUT_S),
            "--metrics-port",
            str(metrics_port),
        ],  # fmt: skip
        cwd=REPO,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: Any, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _wait(cond: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_notify_delivers_each_transition_once_through_failures(
    broker: Any, receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    rx, port = receiver
    events = write_jsonl(tmp_path / "events.jsonl", generate(accounts=30, days=20, seed=5))
    every = backtest(EXAMPLES / "team-chat.yaml", events, out_dir=tmp_path)
    alerts = [t for t in every if is_alert(t)]
    others = [t for t in every if not is_alert(t)]
    transitions = (alerts[: N // 3] + others)[:N]
    assert len(transitions) == N and sum(map(is_alert, transitions)) >= 10
    first, second = transitions[: N // 2], transitions[N // 2 :]

    topic = f"notify-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    # The dead-letter topic too: the embedded broker would auto-create it with 4 partitions
    # when the test's reader asks for it first (notify creates it with the topic's count).
    ensure_topics(broker.bootstrap, [TopicSpec(topic, 3), TopicSpec(f"{topic}-notify-dlq", 3)])

    def send(batch: list[dict[str, Any]]) -> None:
        records = []
        for i, t in enumerate(batch):
            rec = (t["account_id"].encode(), json.dumps(t).encode())
            records += [rec, rec] if i % 5 == 0 else [rec]  # re-emitted
        produce_raw(broker.bootstrap, topic, records)

    hook_ids = {t["transition_id"] for t in transitions}
    refused = {tid for tid in hook_ids if script(tid, "/hook") == "always_500"}
    slack_ids = {t["transition_id"] for t in transitions if is_alert(t)}
    assert refused and hook_ids - refused

    def handled(batch: list[dict[str, Any]], dlq: TopicReader) -> bool:
        ids = {t["transition_id"] for t in batch}
        dlq.poll(0.2)
        dead = {r.json()["transition"]["transition_id"] for r in dlq.records}
        done_hook = {tid for (p, tid) in rx.processed if p == "/hook"} | dead
        done_slack = {tid for (p, tid) in rx.processed if p == "/slack"}
        return ids <= done_hook and (ids & slack_ids) <= done_slack

    log = tmp_path / "notify.log"
    metrics_port = _free_port()
    send(first)
    proc = _start_notify(broker.bootstrap, topic, port, metrics_port, log)
    dlq = TopicReader(broker.bootstrap, f"{topic}-notify-dlq", partitions=3)
    try:
        _wait(lambda: handled(first, dlq), 90, "the first half", log)
        time.sleep(1.0)  # duplicates and stray retries would show now
        _stop(proc, log)
        # The second half, and the whole first half again (a worker re-emitting after a crash):
        # a restarted notify reads back what it delivered and sends none of it again.
        send(second + first)
        proc = _start_notify(broker.bootstrap, topic, port, metrics_port, log)
        _wait(lambda: handled(transitions, dlq), 90, "every transition", log)
        time.sleep(2.0)
        text = _metrics(metrics_port)
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        dlq.close()

    hook = {tid: n for (p, tid), n in rx.processed.items() if p == "/hook"}
    slack = {tid: n for (p, tid), n in rx.processed.items() if p == "/slack"}
    assert set(hook) == hook_ids - refused and set(hook.values()) == {1}
    assert set(slack) == slack_ids and set(slack.values()) == {1}, Counter(slack.values())
    assert rx.bad_signatures == []
    # Retries did happen, for each kind of failure (the slow ones were processed once anyway).
    tries: dict[str, list[int]] = defaultdict(list)
    for (p, tid), n in rx.attempts.items():
        tries[script(tid, p)].append(n)
    assert set(tries["always_500"]) == {ATTEMPTS}
    for kind in ("500_once", "429_once", "slow_processed", "slow_unprocessed"):
        assert tries[kind] and set(tries[kind]) == {2}, (kind, tries[kind])
    # A 429's Retry-After (1 s) was honoured.
    by_tid: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rx.requests:
        by_tid[(r["path"], r["tid"])].append(r["at"])
    for (p, tid), times in by_tid.items():
        if script(tid, p) == "429_once":
            assert times[1] - times[0] >= 0.95, (p, tid, times)
    # Dead letters: the refused ones, once each, with the reason.
    dead = [r.json() for r in dlq.records]
    assert sorted(d["transition"]["transition_id"] for d in dead) == sorted(refused)
    assert {(d["destination"], d["reason"], d["attempts"], d["status"]) for d in dead} == {
        ("webhook", "attempts", ATTEMPTS, 500)
    }
    # The second run's metrics: what it did itself (the first half was read back, not resent).
    delivered = metric_samples(text, "pql_notify_delivered_total")
    second_ids = {t["transition_id"] for t in second}
    assert delivered['{destination="webhook"}'] == len(second_ids - refused)
    duplicates = metric_samples(text, "pql_notify_skipped_total")
    assert duplicates['{destination="webhook",reason="duplicate"}'] >= len(first)
    assert metric_samples(text, "pql_notify_failed_total")[
        '{destination="webhook",reason="attempts"}'
    ] == len(refused & second_ids)
    sla = metric_samples(text, "pql_notify_sla_seconds_count")
    assert sla['{destination="webhook"}'] == delivered['{destination="webhook"}']
