"""The embedded broker: starts, answers, stops without leaving a process, survives port reuse,
and is detected as embedded. Also `pql broker` end to end, and the watchdog of both brokers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.broker.detect import TANSU_CLUSTER_ID, cluster_id, is_embedded_broker
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.io.topics import BrokerUnreachableError

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; on Linux /proc tells.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _connected_producer(bootstrap: str) -> Producer:
    """A producer with an open connection: what makes Tansu slow to exit on SIGTERM."""
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    p.list_topics(timeout=10)
    return p


def test_session_broker_is_embedded(embedded_broker: EmbeddedBroker) -> None:
    broker = embedded_broker
    assert broker.is_running()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert cluster_id(broker.bootstrap) == TANSU_CLUSTER_ID
    assert is_embedded_broker(broker.bootstrap)


def test_is_embedded_broker_false_when_nothing_listens() -> None:
    started = time.monotonic()
    assert is_embedded_broker(f"127.0.0.1:{free_port()}", timeout=1) is False
    assert time.monotonic() - started < 5


def test_start_stop_leaves_no_process() -> None:
    with EmbeddedBroker() as b:
        pid = b.pid
        assert pid is not None and _alive(pid)
        producer = _connected_producer(b.bootstrap)
    assert not _alive(pid)
    assert not b.is_running()
    b.stop()  # idempotent
    del producer


def test_restart_on_port_held_by_dying_broker_waits() -> None:
    """SIGTERM the broker behind our back while a client is connected (so it lingers), then
    start another on the same port: it must wait for the port, not panic with AddrInUse."""
    first = EmbeddedBroker().start()
    try:
        producer = _connected_producer(first.bootstrap)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGTERM)
        with EmbeddedBroker(port=first.port) as second:
            assert second.is_running()
            assert is_embedded_broker(second.bootstrap)
            assert not first.is_running()
        del producer
    finally:
        first.stop()


def test_start_failure_reports_broker_output() -> None:
    """Binding a non-local address fails inside the broker; the error carries its output."""
    from streams.broker.embedded import BrokerStartError

    b = EmbeddedBroker(port=free_port(), host="127.0.0.1")
    b.host = "192.0.2.1"  # TEST-NET-1: never assigned to this machine
    with pytest.raises(BrokerStartError) as info:
        b.start(timeout=10)
    assert "192.0.2.1" in str(info.value)
    assert not b.is_running()


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
def test_watchdog_kills_broker_when_owner_is_killed(kind: str) -> None:
    """A process that starts a broker (Tansu, or Kafka's JVM) and is SIGKILLed (no atexit)
    leaves no broker behind."""
    start = {
        "embedded": "from streams.broker.embedded import EmbeddedBroker as B\n",
        "kafka": "from streams.broker.kafka import KafkaBroker as B\n",
    }[kind]
    code = f"import sys, time\n{start}b = B().start()\nprint(b.pid, flush=True)\ntime.sleep(600)\n"
    owner = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert _alive(pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 40
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


@pytest.mark.parametrize(
    ("kind", "sig"),
    [("embedded", signal.SIGTERM), ("embedded", signal.SIGINT), ("kafka", signal.SIGTERM)],
)
def test_pql_broker_cli_runs_and_stops_on_signal(kind: str, sig: signal.Signals) -> None:
    port = free_port()
    flags = ["--kafka"] if kind == "kafka" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    data_dir: Path | None = None
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first, first
        if kind == "kafka":  # "Apache Kafka 4.x (KRaft, data in DIR) listening on ..."
            assert "Apache Kafka" in first
            data_dir = Path(first.split("data in ", 1)[1].split(")", 1)[0])
            assert data_dir.exists()
        assert "pql worker --broker" in proc.stdout.readline()
        assert is_embedded_broker(f"127.0.0.1:{port}") == (kind == "embedded")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert "broker stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(BrokerUnreachableError):  # nothing answers there any more
        cluster_id(f"127.0.0.1:{port}", timeout=1)
    assert data_dir is None or not data_dir.exists()  # Kafka's data went with it
