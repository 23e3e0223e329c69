"""checkov's Kubernetes and Dockerfile policies on the rendered chart (every values file) and the
Dockerfile, offline. Skips are only the ones annotated in the chart, each with its reason
(deploy/helm/pql-streams/templates/statefulset.yaml, `checkov.io/skipN` annotations)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.deploy import _tools
from tests.deploy._tools import REPO, deploy_venv_tool, explain, run

# check id -> why it does not apply; must match the annotations in the chart.
ALLOWED_SKIPS = {
    "CKV_K8S_43": "image by digest: optional (image.digest), immutable release tag by default",
    "CKV_K8S_15": "pullPolicy Always: IfNotPresent with immutable tags",
    "CKV_K8S_35": "secrets as files: the worker takes SASL credentials from env (secretKeyRef)",
}


def scan(directory: Path) -> list[dict[str, Any]]:
    checkov = deploy_venv_tool("checkov")
    proc = run(
        [
            checkov,
            "--directory",
            str(directory),
            "--framework",
            "kubernetes,dockerfile",
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        timeout=600,
    )
    assert proc.returncode in (0, 1), explain(proc)  # 1: failed checks, reported below
    data = json.loads(proc.stdout)
    reports: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    return reports


def test_checkov_passes(docs: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    for name, manifests in docs.items():
        _tools.write_manifests(manifests, tmp_path, name)
    shutil.copy(REPO / "Dockerfile", tmp_path / "Dockerfile")
    reports = {r["check_type"]: r for r in scan(tmp_path)}
    assert set(reports) == {"kubernetes", "dockerfile"}, list(reports)
    failures = []
    for kind, report in reports.items():
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, summary
        assert summary["passed"] > 0, f"{kind}: nothing was checked"
        for check in report["results"]["failed_checks"]:
            failures.append(f"{check['check_id']} {check['check_name']} ({check['resource']})")
        for check in report["results"].get("skipped_checks", []):
            assert check["check_id"] in ALLOWED_SKIPS, f"unexpected skip {check['check_id']}"
            assert check["check_result"].get("suppress_comment"), (
                f"{check['check_id']} skipped without a reason"
            )
    assert not failures, "checkov failed:\n" + "\n".join(failures)
    assert reports["dockerfile"]["summary"]["skipped"] == 0


def test_checkov_catches_a_privileged_pod(tmp_path: Path) -> None:
    """The scan really runs the Kubernetes policies offline: a privileged root pod fails."""
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox:1.36\n"
        "      securityContext: {privileged: true}\n"
    )
    (report,) = [r for r in scan(tmp_path) if r["check_type"] == "kubernetes"]
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed, failed  # "Container should not be privileged"
