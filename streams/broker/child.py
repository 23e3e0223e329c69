"""A broker run as a child process, safely: the embedded Tansu broker and a real Apache Kafka
broker share this (`streams.broker.embedded`, `streams.broker.kafka`).

Why this is more than `subprocess.Popen`:
- A broker takes seconds to exit on SIGTERM (Tansu ~7 s, Kafka while it closes its logs) and
  keeps its port meanwhile, so `stop()` waits for the PID, and `start()` waits for the port to
  become free instead of racing a dying broker (and retries if another process takes it
  between the check and the bind).
- A run that crashes must leave no broker behind: `stop()` is registered with atexit, and a
  tiny watchdog process (`streams/broker/watchdog.py`) stops the broker if this process dies
  without running atexit (SIGKILL, OOM, a hard pytest-timeout).
- The broker runs in its own process group, so Ctrl-C in a terminal reaches our code (which stops
  it cleanly) rather than killing it halfway.
- Its output goes to a log file, not a pipe: a pipe nobody reads would eventually block it.
- Ready means answering a metadata request as the cluster we started, not a log line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


class BrokerStartError(RuntimeError):
    """The broker could not be started or did not become ready."""


# Listening ports are picked below the OS's ephemeral range: a port from inside it can be handed
# to any outgoing connection on this machine as its local port while the listener is stopped
# (a broker stopped and started again on the same port), and then the listener cannot have it.
_LISTEN_PORTS_FROM = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing uses right now, below the ephemeral range where there is room (a tiny
    race remains: another process may take it before its listener binds)."""
    top = _ephemeral_low()
    if top - _LISTEN_PORTS_FROM >= 1000:
        for _ in range(200):
            port = random.randrange(_LISTEN_PORTS_FROM, top)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as used
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        chosen: int = s.getsockname()[1]
        return chosen


def port_is_free(host: str, port: int) -> bool:
    """True if a listener could bind host:port now.

    SO_REUSEADDR mirrors what the brokers do, so sockets in TIME_WAIT do not count as busy,
    while a live listener (e.g. a broker still shutting down) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no broker output)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no broker output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no broker output)"


class ChildBroker:
    """One broker process listening on host:port. Subclasses say how to prepare and run it.

    Use as a context manager, or call `start()` / `stop()`; both are idempotent.
    """

    name = "broker"  # for messages
    stop_grace_s = 20.0

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._auto_port = port is None  # ours to re-pick if someone takes it before we start
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- what a subclass provides -------------------------------------------------------------

    def _prepare(self, deadline: float) -> None:
        """Before each spawn (fetch what it needs, write its configuration)."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _check_cluster(self, cluster_id: str | None) -> None:
        """Raise BrokerStartError if the broker answering is not the one started."""

    def _ports(self) -> list[int]:
        """Every port the broker binds (the client port first)."""
        return [self.port]

    def _repick_ports(self) -> None:
        self.port = free_port(self.host)

    # -- public -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients pass as bootstrap servers."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the broker's stdout/stderr go (deleted by a clean stop, kept after a crash)."""
        return self._log_path

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> Self:
        """Start the broker and return once it answers a metadata request.

        Waits (up to `timeout`) for its ports to be released by a broker that is still
        shutting down. Raises BrokerStartError with the tail of the broker's output if it exits
        or does not become ready in time.
        """
        if self.is_running():
            return self
        deadline = time.monotonic() + timeout
        while True:
            self._wait_ports_free(deadline)
            self._prepare(deadline)
            self._spawn()
            try:
                self._wait_ready(deadline)
            except _LostPortRace:
                # Someone grabbed a port between our check and the broker's bind: retry.
                self._reap_after_failure()
                continue
            except BaseException:
                self._reap_after_failure()
                raise
            break
        atexit.register(self.stop)
        return self

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the broker, wait up to `grace` seconds for it to exit, then SIGKILL.

        Returns only once the process is gone, so the ports can be reused right away.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s if grace is None else grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None
        self._stop_watchdog()
        atexit.unregister(self.stop)
        if proc.returncode in (0, 143, -signal.SIGTERM) and self._log_path is not None:
            # A clean stop leaves nothing to investigate; a crash keeps its log. (A JVM exits
            # with 143 on SIGTERM.)
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def cleanup(self) -> None:
        """Stop, and remove whatever the broker kept on disk that this object created."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"{type(self).__name__}({self.bootstrap}, {state})"

    # -- internals ----------------------------------------------------------------------------

    def _wait_ports_free(self, deadline: float) -> None:
        if self._auto_port and not all(port_is_free(self.host, p) for p in self._ports()):
            self._repick_ports()
        for port in self._ports():
            while not port_is_free(self.host, port):
                if time.monotonic() > deadline:
                    raise BrokerStartError(
                        f"port {port} on {self.host} stayed busy; another process listens "
                        f"there (`ss -ltnp | grep :{port}`). Pick another port (--port)."
                    )
                time.sleep(0.2)

    def _spawn(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"{self.name}-{self.port}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                process_group=0,  # own group: terminal Ctrl-C does not hit it; we stop it
            )
        self._start_watchdog(self._proc.pid)

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        admin: AdminClient | None = None
        while True:
            code = proc.poll()
            if code is not None:
                output = tail(self._log_path)
                port_taken = "AddrInUse" in output or "Address already in use" in output
                if port_taken and time.monotonic() < deadline:
                    raise _LostPortRace()
                raise BrokerStartError(
                    f"{self.name} exited with code {code} while starting on "
                    f"{self.bootstrap}. Its output:\n{output}"
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"{self.name} on {self.bootstrap} did not answer metadata requests in "
                    f"time. Its output:\n{tail(self._log_path)}"
                )
            # TCP first: librdkafka would log a connection error per refused attempt.
            if tcp_accepts(self.host, self.port):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
                try:
                    # Listing *all* topics creates none (naming one would auto-create it).
                    md = admin.list_topics(timeout=2)
                except KafkaException:
                    pass
                else:
                    if md.brokers:
                        self._check_cluster(md.cluster_id)
                        return
            time.sleep(0.1)

    def _reap_after_failure(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()
        self._proc = None
        self._stop_watchdog()

    def _start_watchdog(self, pid: int) -> None:
        self._watchdog = start_watchdog(pid)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            stop_watchdog(self._watchdog)
            self._watchdog = None


def start_watchdog(pid: int) -> subprocess.Popen[bytes]:
    """The watchdog (`streams/broker/watchdog.py`, its own session: a Ctrl-C must not kill it
    before its owner stops `pid` itself) that stops `pid`'s process group when this process
    goes away, even by SIGKILL."""
    return subprocess.Popen(
        # By path, not `-m`: it needs only the stdlib, whatever the cwd or sys.path.
        [sys.executable, str(Path(__file__).with_name("watchdog.py")), str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_watchdog(wd: subprocess.Popen[bytes]) -> None:
    """Disarm a watchdog once its process was stopped: killed rather than its stdin closed, so
    it never signals a PID the OS may already have recycled."""
    with contextlib.suppress(ProcessLookupError):
        wd.kill()
    wd.wait()
    if wd.stdin is not None:
        with contextlib.suppress(OSError):
            wd.stdin.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class _LostPortRace(Exception):
    """The broker died with AddrInUse: a port got taken after we saw it free."""
