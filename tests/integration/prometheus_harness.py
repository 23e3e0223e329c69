"""Helpers for the observability integration tests: the real Prometheus tools, never imitations.

- `tool(name)`: a Debian tool's path (`promtool`, `prometheus` from the `prometheus` package,
  installed by `make tools`); missing is a test FAILURE, never a skip, so CI cannot go green
  without them.
- `promtool_check_metrics(text)`: `promtool check metrics` on an exposition (its linter).
- `parse_exposition(text)`: {(sample name, labels): value} via prometheus-client's own parser.
- `PrometheusServer`: a real `prometheus` on a free loopback port with a generated config that
  scrapes given targets every second, TSDB in a temp dir, queried through its HTTP API
  (`/api/v1/query`). It runs in its own process group; `stop()` (SIGTERM, then SIGKILL) always
  runs from the test's teardown and nothing survives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.broker.embedded import free_port

DEBIAN_HINT = "run `make tools` (Debian package `prometheus` provides promtool and prometheus)"

#: (sample name, sorted label items)
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def tool(name: str) -> str:
    """Path of a required external tool; `pytest.fail` (not skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {DEBIAN_HINT}")
    return path


# -- exposition --------------------------------------------------------------------------------


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` with the exposition on stdin (exit 0 = no lint problem)."""
    return subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def parse_exposition(text: str) -> dict[SampleKey, float]:
    """Every sample of a text exposition, keyed by (sample name, sorted labels)."""
    out: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def samples(parsed: dict[SampleKey, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one series name: {labels: value}."""
    return {labels: v for (n, labels), v in parsed.items() if n == name}


def value(parsed: dict[SampleKey, float], name: str, **labels: str) -> float | None:
    """One sample's value (None when absent)."""
    return parsed.get((name, tuple(sorted(labels.items()))))


# -- a real Prometheus server ------------------------------------------------------------------


class PrometheusError(AssertionError):
    pass


@dataclass
class PrometheusServer:
    """`prometheus` scraping `targets` (HOST:PORT) as job `job` every `scrape_interval_s`."""

    workdir: Path
    targets: Sequence[str]
    job: str = "pql-streams"
    scrape_interval_s: int = 1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def config(self) -> str:
        interval = f"{self.scrape_interval_s}s"
        doc = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": "/metrics",
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": list(self.targets)}],
                }
            ],
        }
        return json.dumps(doc, indent=2)  # JSON is YAML

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        assert self.proc is None, "already started"
        binary = tool("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config())
        check = subprocess.run(
            [tool("promtool"), "check", "config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, f"generated config rejected:\n{check.stdout}{check.stderr}"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/-/ready", timeout=1.0) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready within {timeout:.0f} s:\n{self.log_tail()}")

    # -- HTTP API -------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=5.0) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            raise PrometheusError(f"{url}: HTTP {e.code}: {body}") from e
        if doc.get("status") != "success":
            raise PrometheusError(f"{url}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query: [(labels, value)] of an instant vector (scalars as one unlabeled
        row)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            return [(r["metric"], float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise PrometheusError(f"{expr!r}: unexpected result type {data['resultType']}")

    def wait_for(
        self,
        expr: str,
        ok: Callable[[list[tuple[dict[str, str], float]]], bool],
        timeout: float,
        interval: float = 0.25,
    ) -> list[tuple[dict[str, str], float]]:
        """Poll `expr` until `ok(result)`; the result that satisfied it. On timeout: an
        AssertionError with the last result and the targets' health."""
        deadline = time.monotonic() + timeout
        last: list[tuple[dict[str, str], float]] | str = "(never queried)"
        while True:
            try:
                result = self.query(expr)
            except PrometheusError as exc:
                last = str(exc)
            else:
                if ok(result):
                    return result
                last = result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{expr!r} not as expected within {timeout:.0f} s; last result: {last}\n"
                    f"targets: {self.targets_health()}"
                )
            time.sleep(interval)

    def targets_health(self) -> list[dict[str, Any]]:
        try:
            data = self.api("targets")
        except (OSError, PrometheusError) as exc:
            return [{"error": str(exc)}]
        return [
            {k: t.get(k) for k in ("scrapeUrl", "health", "lastError", "labels")}
            for t in data.get("activeTargets", [])
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `grace`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
