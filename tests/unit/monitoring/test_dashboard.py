"""Grafana dashboard: every PromQL expression parsed by Prometheus' own parser (promtool check
rules on a generated rules file), every metric name real, the panels SREs need present."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .conftest import MONITORING_DIR, PromtoolRunner, metric_names

DASHBOARD = MONITORING_DIR / "grafana-dashboard.json"

# Grafana's interval variables -> a duration Prometheus accepts; other variables -> a regex
# matching anything (they are only used in `=~` matchers).
INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def substitute(expr: str) -> str:
    """Replace Grafana template variables ($x, ${x}, ${x:fmt}, [[x]]) by valid PromQL."""

    def repl(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        return INTERVALS.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def panel_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every query target of every panel, rows included."""
    out = []
    for p in all_panels(dashboard()["panels"]):
        for t in p.get("targets", []):
            out.append((f"{p['title']}/{t['refId']}", t["expr"]))
    return out


def variable_exprs() -> list[tuple[str, str]]:
    """The series selectors inside `label_values(selector, label)` of query variables."""
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
        assert m, f"variable {v['name']}: unexpected query {q!r}"
        out.append((f"var {v['name']}", m.group(1)))
    return out


def write_rules(path: Path, exprs: list[tuple[str, str]]) -> None:
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute(e), "labels": {"where": w}}
        for i, (w, e) in enumerate(exprs)
    ]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


def test_structure_and_datasource_variable() -> None:
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"] and d["title"]
    ds = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert [v["name"] for v in ds] == ["datasource"] and ds[0]["query"] == "prometheus"
    ids = [p["id"] for p in all_panels(d["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in all_panels(d["panels"]):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].strip(), p["title"]


def test_required_panels_present() -> None:
    by_title = {p["title"]: p for p in all_panels(dashboard()["panels"])}
    exprs = {
        title: " ".join(t["expr"] for t in p.get("targets", [])) for title, p in by_title.items()
    }
    required = {
        "Consumer lag (messages) per partition": "pql_consumer_lag_messages",
        "Consumer lag (seconds) per partition": "pql_consumer_lag_seconds",
        "Throughput in / out": "pql_transitions_total",
        "Processing latency": "pql_processing_latency_seconds_bucket",
        "End-to-end latency": "pql_end_to_end_latency_seconds_bucket",
        "Transitions by kind": "pql_transitions_total",
        "DLQ rate by reason": "pql_dlq_produced_total",
        "PQL & segment membership": "pql_segment_accounts",
        "Accounts in state": "pql_state_accounts",
        "State bytes": "pql_state_bytes",
        "Rebalances": "pql_rebalances_total",
        "Ready / recovery": "pql_recovery_in_progress",
        "Live model version": "pql_model_switch_pending",
        "Model reloads by result": "pql_model_reloads_total",
        "Model switches": "pql_model_switch_seconds_bucket",
        "Notify deliveries": "pql_notify_failed_total",
        "Notify SLA (occurred_at to delivered)": "pql_notify_sla_seconds_bucket",
        "Notify retries by cause": "pql_notify_retries_total",
        "Notify lag": "pql_notify_lag_messages",
        "PQL rate (7 days)": "pql_funnel_first_pqls_total",
        "Conversion: PQLs vs non-PQLs (30 days)": "pql_funnel_conversions_total",
        "Time to PQL and lead time": "pql_funnel_time_to_pql_seconds_bucket",
        "Revenue: PQLs vs non-PQLs (30 days)": "pql_funnel_revenue_total",
    }
    for title, metric in required.items():
        assert title in by_title, f"missing panel {title!r}"
        assert metric in exprs[title], (title, exprs[title])
    assert "pql_events_consumed_total" in exprs["Throughput in / out"]
    for title in ("Processing latency", "End-to-end latency"):
        qs = re.findall(r"histogram_quantile\(([\d.]+),", exprs[title])
        assert sorted(qs) == ["0.5", "0.99"], (title, qs)
        assert "by (le)" in exprs[title]
    assert by_title["State bytes"]["fieldConfig"]["defaults"]["unit"] == "bytes"


def test_substitute_variables() -> None:
    got = substitute('rate(x{job=~"$job",i=~"${instance:regex}"}[$__rate_interval]) [[a]]')
    assert got == 'rate(x{job=~".*",i=~".*"}[5m]) .*'


def test_every_expression_parses_with_promtool(tmp_path: Path, promtool: PromtoolRunner) -> None:
    exprs = panel_exprs() + variable_exprs()
    assert len(exprs) >= 20
    rules = tmp_path / "dashboard-rules.yml"
    write_rules(rules, exprs)
    assert "$" not in rules.read_text()
    proc = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promtool_check_would_catch_a_broken_expression(
    tmp_path: Path, promtool: PromtoolRunner
) -> None:
    rules = tmp_path / "broken.yml"
    write_rules(rules, [*panel_exprs(), ("broken", "sum(rate(pql_rebalances_total[$__interval])")])
    proc = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert proc.returncode != 0


def test_every_metric_name_exists(known_series: frozenset[str]) -> None:
    used: set[str] = set()
    for where, expr in panel_exprs() + variable_exprs():
        names = metric_names(substitute(expr))
        assert names, where
        unknown = names - known_series
        assert not unknown, f"{where}: unknown metrics {unknown}"
        used |= names
    # Every metric the worker exposes is on the dashboard in some form.
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    for required in (
        "pql_consumer_lag_messages",
        "pql_consumer_lag_seconds",
        "pql_events_consumed",
        "pql_events_processed",
        "pql_events_rejected",
        "pql_dlq_produced",
        "pql_late_events",
        "pql_transitions",
        "pql_pql_accounts",
        "pql_segment_accounts",
        "pql_processing_latency_seconds",
        "pql_end_to_end_latency_seconds",
        "pql_state_accounts",
        "pql_state_bytes",
        "pql_rebalances",
        "pql_recovery_in_progress",
        "pql_worker_ready",
        "pql_last_commit_timestamp_seconds",
        "pql_watermark_timestamp_seconds",
        "pql_model_info",
    ):
        assert required in families, required
