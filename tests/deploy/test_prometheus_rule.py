"""The chart's PrometheusRule is deploy/monitoring/alerts.yml, and promtool accepts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy import _tools
from tests.deploy._tools import ALERTS, CHART_ALERTS, DEBIAN_HINT, REPO, explain, one, run, tool


def test_chart_copy_of_the_alert_rules_is_current() -> None:
    """helm packages neither symlinks nor files outside the chart, so the chart keeps a copy of
    deploy/monitoring/alerts.yml. After editing the rules run deploy/helm/sync-alerts.sh."""
    assert ALERTS.is_file(), f"{ALERTS} is missing (the alert rules)"
    assert CHART_ALERTS.is_file(), "run deploy/helm/sync-alerts.sh"
    assert CHART_ALERTS.read_bytes() == ALERTS.read_bytes(), (
        "deploy/helm/pql-streams/files/alerts.yml differs from deploy/monitoring/alerts.yml: "
        "run deploy/helm/sync-alerts.sh"
    )
    proc = run([str(REPO / "deploy" / "helm" / "sync-alerts.sh"), "--check"])
    assert proc.returncode == 0, explain(proc)


def rule(docs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    return one(docs[name], "PrometheusRule")


def test_rendered_rule_embeds_every_group(docs: dict[str, list[dict[str, Any]]]) -> None:
    source = yaml.safe_load(ALERTS.read_text())
    for name in ("sasl", "ephemeral"):
        assert rule(docs, name)["spec"]["groups"] == source["groups"]
    assert rule(docs, "sasl")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_promtool_accepts_the_rendered_rules(
    docs: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = tool("promtool", DEBIAN_HINT)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule(docs, "sasl")["spec"]["groups"]}))
    proc = run([promtool, "check", "rules", str(rules)])
    assert proc.returncode == 0, explain(proc)
    assert "SUCCESS" in proc.stdout + proc.stderr, explain(proc)


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    promtool = tool("promtool", DEBIAN_HINT)
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n")
    proc = run([promtool, "check", "rules", str(bad)])
    assert proc.returncode != 0, explain(proc)


def test_rule_needs_the_alerts_file(tmp_path: Path) -> None:
    """Without files/alerts.yml the chart fails loudly instead of rendering an empty rule."""
    import shutil

    chart = tmp_path / "pql-streams"
    shutil.copytree(_tools.CHART, chart)
    (chart / "files" / "alerts.yml").unlink()
    helm = _tools.helm()
    with helm.Chart.load(str(chart)) as loaded:
        try:
            loaded.render(
                values={"metrics": {"prometheusRule": {"enabled": True}}}, name="x", namespace="y"
            )
        except helm.HelmError as exc:
            assert "sync-alerts.sh" in str(exc)
        else:
            raise AssertionError("rendered a PrometheusRule without files/alerts.yml")
