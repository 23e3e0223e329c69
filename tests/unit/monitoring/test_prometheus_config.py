"""The example Prometheus config: valid for promtool (including the rules file it loads), and
its commented Kubernetes variant well-formed once uncommented.

Debian's `prometheus` package is built without Kubernetes service discovery (its promtool says
"field kubernetes_sd_configs not found"), so the Kubernetes variant is checked structurally."""

from __future__ import annotations

import re

import yaml

from .conftest import MONITORING_DIR, PromtoolRunner
from .test_alerts import EXPECTED_ALERTS

CONFIG = MONITORING_DIR / "prometheus.yml"


def test_promtool_check_config(promtool: PromtoolRunner) -> None:
    proc = promtool("check", "config", CONFIG.name)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out


def test_scrape_job_matches_worker_and_alerts() -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "pql-streams"
    assert job["metrics_path"] == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets and all(t.endswith(":6066") for t in targets)
    assert 'job="pql-streams"' in (MONITORING_DIR / "alerts.yml").read_text()


def test_kubernetes_variant_is_well_formed_when_uncommented() -> None:
    text = CONFIG.read_text()
    block = re.search(r"^  # - job_name: pql-streams\n(?:^  #.*\n?)+", text, re.M)
    assert block, "commented kubernetes_sd variant not found"
    k8s = "\n".join(line.replace("  # ", "  ", 1) for line in block.group(0).splitlines())
    assert "kubernetes_sd_configs" in k8s
    static = re.search(r"^  - job_name: pql-streams\n(?:^    .*\n)+", text, re.M)
    assert static
    variant = text.replace(static.group(0), k8s + "\n")
    doc = yaml.safe_load(variant)
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "pql-streams" and job["metrics_path"] == "/metrics"
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keeps[("__meta_kubernetes_pod_container_port_number",)] == "6066"
    assert set(job) <= {"job_name", "metrics_path", "kubernetes_sd_configs", "relabel_configs"}
