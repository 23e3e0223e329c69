"""Shared helpers of the monitoring-artifact tests: the real promtool, never a Python imitation,
so that what passes here is what Prometheus itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.metrics import Metrics
from streams.notify.metrics import NotifyMetrics

MONITORING_DIR = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"

# Series names a Prometheus server adds itself; everything else must come from streams.metrics
# (the worker) or streams.notify.metrics (pql notify).
SERVER_SERIES = frozenset({"up"})

PromtoolRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def promtool_path() -> str:
    """promtool's path; missing is a failure, not a skip, so CI cannot pass without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make tools` (Debian package `prometheus`)")
    return path


@pytest.fixture()
def promtool(promtool_path: str) -> PromtoolRunner:
    """Run promtool with arguments in a directory; returns the completed process."""

    def run(*args: str, cwd: Path = MONITORING_DIR) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool_path, *args], cwd=cwd, capture_output=True, text=True, timeout=120
        )

    return run


@pytest.fixture(scope="session")
def known_series() -> frozenset[str]:
    return Metrics().sample_names() | NotifyMetrics().sample_names() | SERVER_SERIES


_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right", "atan2"}
    # aggregation operators may be followed by `by (...)` before their parenthesis
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression.

    Not a parser (promtool does the parsing in these tests): it strips string literals, label
    matchers, grouping label lists and range durations, then keeps identifiers that are not
    function calls or keywords — enough to catch a misspelt metric name, which promtool cannot
    (an unknown name is valid PromQL)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1()", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = re.sub(r"#[^\n]*", "", s)  # comments
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        ident, call = m.group(1), m.group(2)
        if call or ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names
