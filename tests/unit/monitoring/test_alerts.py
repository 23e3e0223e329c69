"""Alert rules: accepted by promtool, unit-tested by promtool for every rule (and the unit tests
proven sensitive by mutating each rule), annotated for the on-call, and using real metric names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import MONITORING_DIR, PromtoolRunner, metric_names

ALERTS = MONITORING_DIR / "alerts.yml"
ALERT_TESTS = MONITORING_DIR / "alerts.test.yml"
RUNBOOK = MONITORING_DIR / "runbook.md"

EXPECTED_ALERTS = {
    "PqlConsumerLagGrowing",
    "PqlConsumerLagSecondsOverSLO",
    "PqlNoEventsConsumed",
    "PqlDlqRateHigh",
    "PqlCommitsStalled",
    "PqlWorkerNotReady",
    "PqlModelChangeRefused",
    "PqlModelSwitchStuck",
    "PqlFrequentRebalances",
    "PqlNotifyDeadLetters",
    "PqlNotifyLagGrowing",
    "PqlNotifySlaBreached",
}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    groups = doc["groups"]
    assert [g["name"] for g in groups] == ["pql-streams"]
    result: list[dict[str, Any]] = groups[0]["rules"]
    return result


def test_promtool_check_rules(promtool: PromtoolRunner) -> None:
    proc = promtool("check", "rules", ALERTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in proc.stdout


def test_promtool_test_rules(promtool: PromtoolRunner) -> None:
    proc = promtool("test", "rules", ALERT_TESTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_expected_alerts_with_severity_and_annotations() -> None:
    names = [r["alert"] for r in rules()]
    assert set(names) == EXPECTED_ALERTS and len(names) == len(set(names))
    runbook = RUNBOOK.read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbook, re.M)}
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), rule["alert"]
        anchor = f"runbook.md#{rule['alert'].lower()}"
        assert anchor in ann.get("runbook", ""), rule["alert"]
        assert rule["alert"].lower() in anchors, f"runbook.md lacks a section {rule['alert']}"


def test_lag_slo_is_explicit() -> None:
    (slo,) = [r for r in rules() if r["alert"] == "PqlConsumerLagSecondsOverSLO"]
    assert re.search(r"pql_consumer_lag_seconds\s*>\s*60\b", slo["expr"])
    assert "SLO: 60 s" in slo["annotations"]["description"]
    assert slo["for"] == "5m"


def test_every_metric_name_exists(known_series: frozenset[str]) -> None:
    used: set[str] = set()
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        used |= names
    assert used - known_series == set()
    assert "pql_consumer_lag_messages" in used and "up" in used


def test_every_rule_has_firing_and_quiet_cases() -> None:
    doc = yaml.safe_load(ALERT_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def _mutated(tmp_path: Path, alert: str, expr: str) -> Path:
    """Copy alerts and their tests to tmp_path with one rule's expression replaced."""
    doc = yaml.safe_load(ALERTS.read_text())
    for rule in doc["groups"][0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = expr
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts.test.yml")
    return tmp_path


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_rule_tests_catch_a_rule_that_never_fires(
    alert: str, tmp_path: Path, promtool: PromtoolRunner
) -> None:
    """If the rule never fired, its firing test case must fail."""
    d = _mutated(tmp_path, alert, "vector(1) > 2")
    proc = promtool("test", "rules", "alerts.test.yml", cwd=d)
    assert proc.returncode != 0, proc.stdout
    assert f"alertname: {alert}" in proc.stdout + proc.stderr


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_rule_tests_catch_a_rule_that_always_fires(
    alert: str, tmp_path: Path, promtool: PromtoolRunner
) -> None:
    """If the rule fired regardless of input, its not-firing test case must fail."""
    d = _mutated(tmp_path, alert, "vector(1)")
    proc = promtool("test", "rules", "alerts.test.yml", cwd=d)
    assert proc.returncode != 0, proc.stdout
    assert f"alertname: {alert}" in proc.stdout + proc.stderr
