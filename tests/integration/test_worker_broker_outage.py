"""The Kafka broker goes away and comes back, on real Kafka (the broker's data is on disk):

- stopped for ~35 s while events flow (longer than the ingest stage once waited for its
  forwarded records before it gave up and the worker exited): the worker says it is not ready
  while the broker is gone, is ready again once it is back (by itself or, if it got stuck, after its stall guard
  made it exit and it was started again, as its supervisor would), and the transitions are
  exactly `pql backtest`'s (re-emits of the same transition id allowed, nothing lost);
- a worker started while the broker is down says what it waits for and comes up when the
  broker does (on the embedded broker too, which it must still recognise as such).

The Kafka tests share the module's own broker, which they stop and start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from streams.broker.child import tail, tcp_accepts
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.broker.kafka import KafkaBroker
from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    WorkerNames,
    WorkerProc,
    Workers,
    assert_duplicates_identical,
    backtest,
    collect,
    diff_report,
    name_accounts,
    produce,
    produce_in_background,
    transition_key,
    workers,  # noqa: F401 - fixture
    write_jsonl,
    write_parts,
)

MODEL = EXAMPLES / "team-chat.yaml"
OUTAGE_S = 35.0
STALL_S = 45.0  # the worker's --stall-timeout here (120 s by default)


@pytest.fixture()
def broker(kafka_broker: KafkaBroker) -> KafkaBroker:
    return kafka_broker


def _ready(w: WorkerProc) -> bool:
    with contextlib.suppress(OSError):
        return w.get("/readyz", timeout=1.0)[0] == 200
    return False


def _wait(
    predicate: object, timeout: float, what: str, w: WorkerProc, broker: KafkaBroker | None = None
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"not {what} within {timeout:.0f} s:\n{_diagnose(w, broker)}")


def _diagnose(w: WorkerProc, broker: KafkaBroker | None) -> str:
    """What a stuck worker was doing: its /readyz body, the stacks of its asyncio tasks (mode's
    worker prints them on SIGUSR1, from its event loop: none means the loop is blocked) and of
    its threads (SIGQUIT), its log, and the broker's log."""
    try:
        readyz = w.get("/readyz", timeout=2.0)[1].decode(errors="replace")
    except OSError as e:
        readyz = f"(no answer: {e})"
    if w.running and w.proc is not None:
        # SIGQUIT: every thread's Python stack (faulthandler, even with the event loop stuck).
        for sig in (signal.SIGUSR1, signal.SIGQUIT):
            with contextlib.suppress(OSError):
                os.kill(w.proc.pid, sig)
        time.sleep(3)
    state = f"running (pid {w.proc.pid})" if w.running and w.proc else f"exited ({w.returncode()})"
    if broker is None:
        broker_state = "(not asked)"
    else:
        listening = tcp_accepts(broker.host, broker.port)
        broker_state = (
            f"{broker!r}, accepts on {broker.port}: {listening}\n{_sockets(broker.port)}\n"
            f"--- broker log ---\n{tail(broker.log_path, 40)}"
        )
    return (
        f"/readyz: {readyz}\nworker: {state}\n--- worker log (after SIGUSR1; librdkafka's "
        f"connection errors summed up) ---\n{_without_rdkafka_noise(w.log_tail(600))}\n"
        f"--- broker ---\n{broker_state}"
    )


def _sockets(port: int) -> str:
    """Every socket on this machine using `port` (a stale connection holding a listener's port
    shows here)."""
    try:
        out = subprocess.run(
            ["ss", "-tanp", f"( sport = :{port} or dport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"(ss: {e})"
    return out.strip()[:4000]


def _without_rdkafka_noise(log: str) -> str:
    """The log with librdkafka's per-attempt connection errors replaced by one line per run of
    them (how many, first and last time): they otherwise fill the whole tail."""
    out: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            first, last = run[0].split("|")[1], run[-1].split("|")[1]
            out.append(
                f"[{len(run)} librdkafka connection errors from {first} to {last}: {run[-1]}]"
            )
            run.clear()

    for line in log.splitlines():
        if line.startswith("%3|") and "|FAIL|" in line:
            run.append(line)
        else:
            close_run()
            out.append(line)
    close_run()
    return "\n".join(out[-300:])


def test_broker_stopped_mid_stream_and_started_again(
    broker: KafkaBroker,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    events = name_accounts(generate(accounts=24, days=12, seed=23))
    third = len(events) // 3
    first, during, rest = write_parts(tmp_path, events, 3)
    expected = backtest(MODEL, first, during, rest, out_dir=tmp_path)

    names = WorkerNames.unique("outage")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    w = workers.start(MODEL, names, extra_args=["--stall-timeout", str(STALL_S)])
    produce(bootstrap, names.input_topic, first)
    # The broker stops while the middle third is flowing (its producer buffers and retries).
    flowing = produce_in_background(bootstrap, names.input_topic, during, rate=third / 8)
    time.sleep(3)
    broker.stop()
    down_at = time.monotonic()
    _wait(lambda: not _ready(w), OUTAGE_S, "unready while the broker is down", w)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    assert w.running, f"the worker exited while the broker was down:\n{w.log_tail()}"
    assert not _ready(w)
    broker.start()
    # Ready again, by itself, or, if it got stuck, after its stall guard made it exit and a
    # supervisor (here: this test) started it again.
    restarts: list[float] = []

    def ready_or_supervised() -> bool:
        if not w.running:
            log = w.log_path.read_text(errors="replace")
            guarded = log.count("has not been ready for") > len(restarts)
            assert guarded and w.returncode() == 1, (
                f"the worker exited ({w.returncode()}), not by its stall guard:\n"
                + _diagnose(w, broker)
            )
            restarts.append(time.monotonic())
            w.start()
        return _ready(w)

    back = _wait(ready_or_supervised, 150, "ready again after the broker came back", w, broker)
    assert len(restarts) <= 1, w.log_tail()
    flowing.join(120)
    assert not flowing.is_alive()
    produce(bootstrap, names.input_topic, rest)

    got = collect(reader, expected, timeout=120, settle=w.settle, give_up_idle=20)
    if {transition_key(t) for t in got} != {transition_key(t) for t in expected}:
        raise AssertionError(f"{diff_report(got, expected)}\n{_diagnose(w, broker)}")
    dupes = assert_duplicates_identical(got)
    how = "after the stall guard's restart" if restarts else "without a restart"
    print(f"\nbroker outage: ready again {back:.1f} s after the broker ({how}); {dupes} re-emits")


def test_worker_started_while_the_broker_is_down_comes_up_with_it(
    broker: KafkaBroker,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap = workers.bootstrap
    events = write_jsonl(
        tmp_path / "events.jsonl", name_accounts(generate(accounts=6, days=6, seed=29))
    )
    expected = backtest(MODEL, events, out_dir=tmp_path)
    names = WorkerNames.unique("down")
    names.create_topics(bootstrap)
    broker.stop()
    w = workers.new(MODEL, names).start()
    _wait(
        lambda: "waiting for the Kafka broker" in w.log_path.read_text(errors="replace"),
        30,
        "saying it waits for the broker",
        w,
    )
    assert bootstrap in w.log_tail()
    assert w.running and not _ready(w)
    broker.start()
    w.wait_ready(timeout=90)
    reader = workers.reader(names.output_topic)
    produce(bootstrap, names.input_topic, events)
    got = collect(reader, expected, timeout=90, settle=w.settle)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, diff_report(
        got, expected
    )


def test_worker_started_before_the_embedded_broker_still_applies_its_workarounds(
    tmp_path: Path,
) -> None:
    """The worker used to give the embedded-broker check 5 s and take silence for "not
    embedded", running without the workarounds the embedded broker needs. It now waits for an
    answer first."""
    late = EmbeddedBroker(port=free_port())
    ws = Workers(late.bootstrap, tmp_path)
    try:
        w = ws.new(MODEL, WorkerNames.unique("late")).start()
        _wait(
            lambda: "waiting for the Kafka broker" in w.log_path.read_text(errors="replace"),
            30,
            "saying it waits for the broker",
            w,
        )
        time.sleep(3)  # well past the old 5 s detection timeout
        late.start()
        w.wait_ready(timeout=90)
        assert "embedded broker (Tansu) detected" in w.log_path.read_text(errors="replace")
    finally:
        ws.stop_all()
        late.stop()
