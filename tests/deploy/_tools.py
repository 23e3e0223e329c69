"""Shared helpers of the deployment validation tests: locating the validators, running them,
rendering the Helm chart. A missing tool is a test failure naming the Makefile target that
installs it, never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "pql-streams"
VALUES_DIR = Path(__file__).resolve().parent / "values"
ALERTS = REPO / "deploy" / "monitoring" / "alerts.yml"
CHART_ALERTS = CHART / "files" / "alerts.yml"

# Kubernetes minor versions the chart supports; every rendered manifest is validated against each.
KUBE_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34")

# Values files the chart is rendered, linted and validated with.
VALUES_FILES = ("default", "standby", "sasl", "ephemeral", "notify")

RELEASE = "pql"
NAMESPACE = "pql"

VENV_HINT = "run `make venv` (it installs requirements-tools.txt into .venv)"
DEPLOY_VENV_HINT = (
    "run `make venv` (it runs scripts/deploy-tools-venv.sh, which installs checkov into "
    ".venv/deploy-tools)"
)
DEBIAN_HINT = "run `make tools` (scripts/ensure-debian-tools.sh installs Debian's `prometheus`)"


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool: this interpreter's scripts dir first (the venv the tests
    run in, which need not be on PATH), then PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    candidate = scripts / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"`{name}` is not installed: {hint}", pytrace=False)


def deploy_venv_tool(name: str) -> str:
    """A tool of the separate deploy-tools venv (scripts/deploy-tools-venv.sh), for validators
    whose dependencies conflict with the project's."""
    venv = Path(os.environ.get("PQL_DEPLOY_TOOLS_VENV", REPO / ".venv" / "deploy-tools"))
    candidate = venv / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail(f"`{name}` is not installed in {venv}: {DEPLOY_VENV_HINT}", pytrace=False)


def run(
    args: list[str], *, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - exercised only on a broken setup
        pytest.fail(f"helm-python-sdk is not installed ({exc}): {VENV_HINT}", pytrace=False)
    return helm_python


def values(name: str) -> dict[str, Any]:
    data = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text()) or {}
    assert isinstance(data, dict)
    return data


def render(vals: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), like `helm template`."""
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(values=vals, name=RELEASE, namespace=NAMESPACE)
    return rendered


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def worker_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    sts = one(docs, "StatefulSet")
    containers = sts["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "worker")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def write_manifests(docs: list[dict[str, Any]], directory: Path, prefix: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, doc in enumerate(docs):
        path = directory / f"{prefix}-{i:02d}-{doc['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths
