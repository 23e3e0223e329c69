"""The Helm chart: renders with every values file, lints clean, every manifest valid for each
supported Kubernetes version (kubernetes-validate --strict), and the deployment contract holds."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streams.notify.routes import Destination, parse_routes
from tests.deploy import _tools
from tests.deploy._tools import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    VALUES_FILES,
    VENV_HINT,
    by_kind,
    env_of,
    explain,
    one,
    run,
    tool,
    worker_container,
)

# Kinds from CRDs (Prometheus Operator) that kubernetes-validate has no schema for: checked
# against the subset of their CRD schema the chart uses (crd_schemas.yaml) and, for the rules,
# by promtool (test_prometheus_rule.py).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
CRD_SCHEMAS = yaml.safe_load((Path(__file__).parent / "crd_schemas.yaml").read_text())


@pytest.mark.parametrize("name", VALUES_FILES)
@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_lint_clean(name: str, kube: str) -> None:
    helm = _tools.helm()
    report = helm.lint(
        str(CHART), _tools.values(name), strict=True, namespace=NAMESPACE, kube_version=f"v{kube}.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("name", VALUES_FILES)
def test_values_match_schema(name: str) -> None:
    helm = _tools.helm()
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(_tools.values(name))


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_manifests_valid_for_kubernetes(
    kube: str, docs: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    validator = tool("kubernetes-validate", VENV_HINT)
    files: list[Path] = []
    for name, manifests in docs.items():
        core = [d for d in manifests if d["kind"] not in CRD_KINDS]
        files += _tools.write_manifests(core, tmp_path, name)
    proc = run([validator, "--strict", "-k", f"{kube}.0", *map(str, files)])
    assert proc.returncode == 0, explain(proc)
    passed = [line for line in proc.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(files), explain(proc)
    assert "WARN" not in proc.stdout + proc.stderr, explain(proc)


def test_kubernetes_validate_is_strict(tmp_path: Path) -> None:
    """--strict really rejects an unknown field (a typo in a template would be caught)."""
    validator = tool("kubernetes-validate", VENV_HINT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 80}], publishNotReadyAdresses: true}\n"
    )
    proc = run([validator, "--strict", "-k", f"{KUBE_VERSIONS[0]}.0", str(bad)])
    assert proc.returncode != 0, explain(proc)


def test_chart_declares_the_tested_versions() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["annotations"]["pql-streams/tested-kubernetes-versions"].split() == list(
        KUBE_VERSIONS
    )
    assert meta["kubeVersion"] == f">={KUBE_VERSIONS[0]}.0-0"


def test_crd_kinds_match_their_schema(docs: dict[str, list[dict[str, Any]]]) -> None:
    seen = set()
    for manifests in docs.values():
        for doc in manifests:
            if doc["kind"] in CRD_KINDS:
                jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
                seen.add(doc["kind"])
    assert seen == CRD_KINDS, "a values file should enable the ServiceMonitor and PrometheusRule"


# --- the deployment contract -------------------------------------------------------------------


def test_statefulset_with_a_pvc_per_pod(docs: dict[str, list[dict[str, Any]]]) -> None:
    sts = one(docs["default"], "StatefulSet")
    headless = one(docs["default"], "Service")
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    mounts = {m["name"]: m["mountPath"] for m in worker_container(docs["default"])["volumeMounts"]}
    assert mounts["data"] == "/var/lib/pql"
    assert env_of(worker_container(docs["default"]))["PQL_DATA_DIR"]["value"] == "/var/lib/pql"
    standby = one(docs["standby"], "StatefulSet")
    (claim,) = standby["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    ephemeral = one(docs["ephemeral"], "StatefulSet")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    volumes = {v["name"]: v for v in ephemeral["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_static_membership_from_pod_name(docs: dict[str, list[dict[str, Any]]]) -> None:
    for manifests in docs.values():
        env = env_of(worker_container(manifests))
        assert env["PQL_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_worker_environment(docs: dict[str, list[dict[str, Any]]]) -> None:
    env = env_of(worker_container(docs["default"]))
    assert env["PQL_APP_ID"]["value"] == "pql-weighted-demo"
    assert env["PQL_BROKER"]["value"] == "kafka:9092"
    assert env["PQL_PARTITIONS"]["value"] == "4"
    assert env["PQL_STANDBY_REPLICAS"]["value"] == "0"
    assert env["PQL_WEB_PORT"]["value"] == "6066"
    assert env["PQL_MODEL"]["value"] == "/etc/pql/model/model.yaml"
    assert env["PQL_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT"
    assert "PQL_SASL_PASSWORD" not in env
    standby = env_of(worker_container(docs["standby"]))
    assert standby["PQL_STANDBY_REPLICAS"]["value"] == "1"
    assert standby["PQL_PARTITIONS"]["value"] == "8"


def test_sasl_and_tls_from_existing_secrets(docs: dict[str, list[dict[str, Any]]]) -> None:
    container = worker_container(docs["sasl"])
    env = env_of(container)
    assert env["PQL_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["PQL_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    for var, key in (("PQL_SASL_USERNAME", "username"), ("PQL_SASL_PASSWORD", "password")):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pql-kafka-credentials", "key": key}
    assert env["PQL_SSL_CAFILE"]["value"] == "/etc/pql/tls/ca.crt"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["kafka-ca"]["mountPath"] == "/etc/pql/tls" and mounts["kafka-ca"]["readOnly"]
    volumes = {
        v["name"]: v
        for v in one(docs["sasl"], "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["kafka-ca"]["secret"]["secretName"] == "pql-kafka-ca"
    assert env["PQL_APP_ID"]["value"] == "pql-team-chat-v3"
    # The chart never renders credentials itself.
    assert not by_kind(docs["sasl"], "Secret")


def test_probes_and_startup_budget(docs: dict[str, list[dict[str, Any]]]) -> None:
    for name, budget in (("default", 1800), ("standby", 3600)):
        c = worker_container(docs[name])
        start, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
        assert start["httpGet"]["path"] == "/readyz"
        assert ready["httpGet"]["path"] == "/readyz"
        assert live["httpGet"]["path"] == "/healthz"
        assert start["periodSeconds"] * start["failureThreshold"] >= budget
        # Liveness alone must not kill a worker that is busy for a moment.
        assert live["periodSeconds"] * live["failureThreshold"] >= 30
        assert {p["httpGet"]["port"] for p in (start, ready, live)} == {"web"}
        assert c["ports"] == [{"name": "web", "containerPort": 6066, "protocol": "TCP"}]


def test_termination_grace_above_shutdown_budget(docs: dict[str, list[dict[str, Any]]]) -> None:
    for manifests in docs.values():
        spec = one(manifests, "StatefulSet")["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > 30


def test_anti_affinity_only_with_standbys(docs: dict[str, list[dict[str, Any]]]) -> None:
    assert "affinity" not in one(docs["default"], "StatefulSet")["spec"]["template"]["spec"]
    spec = one(docs["standby"], "StatefulSet")["spec"]["template"]["spec"]
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = one(docs["standby"], "StatefulSet")["spec"]["selector"]["matchLabels"]
    assert term["labelSelector"]["matchLabels"] == selector
    soft = _tools.manifests(
        _tools.render({**_tools.values("standby"), "antiAffinity": {"type": "soft"}})
    )
    spec = one(soft, "StatefulSet")["spec"]["template"]["spec"]
    assert spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]


def test_pod_disruption_budget(docs: dict[str, list[dict[str, Any]]]) -> None:
    pdb = one(docs["default"], "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == one(docs["default"], "StatefulSet")["spec"]["selector"]["matchLabels"]
    )
    assert not by_kind(docs["ephemeral"], "PodDisruptionBudget")


def test_security_context(docs: dict[str, list[dict[str, Any]]]) -> None:
    for manifests in docs.values():
        pod = one(manifests, "StatefulSet")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["automountServiceAccountToken"] is False
        c = worker_container(manifests)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[tmp["name"]]
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


def test_model_configmap_reloads_live_or_rolls_the_pods(
    docs: dict[str, list[dict[str, Any]]],
) -> None:
    cm = one(docs["default"], "ConfigMap")
    model = yaml.safe_load(cm["data"]["model.yaml"])
    assert model["name"] == "weighted-demo" and model["version"] == 1
    pod = one(docs["default"], "StatefulSet")["spec"]["template"]
    assert {"name": "model", "configMap": {"name": cm["metadata"]["name"]}} in pod["spec"][
        "volumes"
    ]
    # Mounted as a directory (no subPath): the kubelet's updates reach the running worker.
    mount = next(
        m for m in worker_container(docs["default"])["volumeMounts"] if m["name"] == "model"
    )
    assert "subPath" not in mount
    vals = _tools.values("default")
    with _tools.helm().Chart.load(str(CHART)) as chart:
        defaults = chart.values["model"]
    content = defaults["content"]
    changed = content.replace("version: 1", "version: 2")
    notes_path = "pql-streams/templates/NOTES.txt"

    def render(reload: str, text: str) -> dict[str, str]:
        return _tools.render({**vals, "model": {"content": text, "reload": reload}})

    def template(reload: str, text: str) -> dict[str, Any]:
        return one(_tools.manifests(render(reload, text)), "StatefulSet")["spec"]["template"]

    # live (the default): a changed model leaves the pod template alone (no rolling restart).
    assert defaults["reload"] == "live"
    assert "checksum/model" not in pod["metadata"]["annotations"]
    assert template("live", changed) == template("live", content)
    assert "applied live, without restarting the pods" in render("live", content)[notes_path]
    # restart: the ConfigMap checksum is a pod annotation, so a changed model rolls the pods.
    before = template("restart", content)["metadata"]["annotations"]["checksum/model"]
    after = template("restart", changed)["metadata"]["annotations"]["checksum/model"]
    assert len(before) == 64 and after != before
    assert hashlib.sha256(b"").hexdigest() not in {before, after}
    assert "roll the pods" in render("restart", content)[notes_path]


def test_shadow_models_are_mounted_beside_the_model_and_named_to_the_worker(
    docs: dict[str, list[dict[str, Any]]],
) -> None:
    env = {e["name"]: e for e in worker_container(docs["default"])["env"]}
    assert "PQL_SHADOW" not in env  # none by default
    vals = _tools.values("default")
    with _tools.helm().Chart.load(str(CHART)) as chart:
        content = chart.values["model"]["content"]
    candidate = content.replace("version: 1", "version: 2").replace("score >= 100", "score >= 90")
    other = content.replace("version: 1", "version: 3")
    model = {"content": content, "shadows": {"lower-bar": candidate, "v3": other}}
    manifests = _tools.manifests(_tools.render({**vals, "model": model}))
    cm = one(manifests, "ConfigMap")
    assert yaml.safe_load(cm["data"]["shadow-lower-bar.yaml"])["version"] == 2
    assert yaml.safe_load(cm["data"]["shadow-v3.yaml"])["version"] == 3
    env = {e["name"]: e for e in worker_container(manifests)["env"]}
    paths = env["PQL_SHADOW"]["value"].split(" ")
    assert sorted(paths) == [
        "/etc/pql/model/shadow-lower-bar.yaml",
        "/etc/pql/model/shadow-v3.yaml",
    ]


def test_optional_monitoring(docs: dict[str, list[dict[str, Any]]]) -> None:
    assert not by_kind(docs["default"], "ServiceMonitor")
    assert not by_kind(docs["default"], "PrometheusRule")
    sm = one(docs["sasl"], "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = one(docs["sasl"], "Service")
    # job="pql-streams", which the alert rules select on.
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "pql-streams"
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "web"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    for key, value in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][key] == value


def test_lookup_api_reaches_the_owner_by_its_stable_name(
    docs: dict[str, list[dict[str, Any]]],
) -> None:
    env = env_of(worker_container(docs["default"]))
    names = list(env)
    assert names.index("PQL_INSTANCE_ID") < names.index("PQL_ADVERTISED_URL")  # $(...) order
    assert env["PQL_ADVERTISED_URL"]["value"] == (
        "http://$(PQL_INSTANCE_ID).pql-pql-streams-headless.pql.svc:6066"
    )
    assert "PQL_API_TOKEN" not in env
    token = env_of(worker_container(docs["sasl"]))["PQL_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "pql-api-token", "key": "token"}
    # With peers listed, the workers may still reach each other's web port.
    (rule,) = one(docs["sasl"], "NetworkPolicy")["spec"]["ingress"]
    sts = one(docs["sasl"], "StatefulSet")
    assert rule["from"][-1]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]


def test_network_policy_admits_only_the_web_port(docs: dict[str, list[dict[str, Any]]]) -> None:
    np = one(docs["sasl"], "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": "web", "protocol": "TCP"}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert not by_kind(docs["ephemeral"], "NetworkPolicy")


def test_optional_notify_deployment(docs: dict[str, list[dict[str, Any]]]) -> None:
    """pql notify: off by default; on, a Deployment whose URLs and secret come from the existing
    Secret, its routes from a ConfigMap (a valid routes file), its own selector labels (the
    worker StatefulSet never selects its pods), scraped as job pql-notify."""
    assert not by_kind(docs["default"], "Deployment")
    notify = docs["notify"]
    dep = one(notify, "Deployment")
    sts = one(notify, "StatefulSet")
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["notify"]
    env = env_of(container)
    assert env["PQL_NOTIFY_BROKER"]["value"] == "kafka:9092"
    assert env["PQL_NOTIFY_TOPIC"]["value"] == "pql-transitions"
    assert env["PQL_NOTIFY_GROUP"]["value"] == "pql-weighted-demo-notify"
    assert env["PQL_NOTIFY_ATTEMPTS"]["value"] == "8"
    for name, key in (
        ("PQL_NOTIFY_WEBHOOK", "webhook"),
        ("PQL_NOTIFY_SECRET", "secret"),
        ("PQL_NOTIFY_SLACK_WEBHOOK", "slack-webhook"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pql-notify-webhooks", "key": key, "optional": True}
    assert env["CRM_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "crm-secret"
    assert env["PQL_NOTIFY_ROUTES"]["value"] == "/etc/pql/notify/routes.yaml"
    (cm,) = [c for c in by_kind(notify, "ConfigMap") if c["metadata"]["name"].endswith("routes")]
    routing = parse_routes(
        cm["data"]["routes.yaml"],
        flags={"slack": Destination("slack", "slack", "https://hooks.slack.com/x")},
        env={"CRM_SECRET": "k"},
    )
    assert [r.to for r in routing.rules] == ["slack", "crm"]
    # Selectors: disjoint from the worker's.
    worker_sel = sts["spec"]["selector"]["matchLabels"]
    notify_sel = dep["spec"]["selector"]["matchLabels"]
    assert worker_sel.items() - pod["metadata"]["labels"].items()
    assert not notify_sel.items() - pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "notify"
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    monitors = {m["metadata"]["name"]: m for m in by_kind(notify, "ServiceMonitor")}
    svc = next(s for s in by_kind(notify, "Service") if s["metadata"]["name"].endswith("notify"))
    sm = monitors[svc["metadata"]["name"]]
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "pql-notify"
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    nps = [n for n in by_kind(notify, "NetworkPolicy") if n["metadata"]["name"].endswith("notify")]
    assert nps[0]["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_notes_say_how_to_check_lag(rendered: dict[str, dict[str, str]]) -> None:
    notes = rendered["default"]["pql-streams/templates/NOTES.txt"]
    assert "kubectl -n pql exec pql-pql-streams-0 -c worker --" in notes
    assert 'pql lag --broker "kafka:9092" --group pql-weighted-demo' in notes
    sasl = rendered["sasl"]["pql-streams/templates/NOTES.txt"]
    assert "--group pql-team-chat-v3" in sasl


# --- values the chart refuses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicaCount": 5}, "kafka.partitions"),
        ({"standbyReplicas": 2}, "standbyReplicas"),
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "existingSecret"),
        ({"model": {"content": "version: 1\n"}}, "name"),
        ({"notify": {"enabled": True}}, "notify.existingSecret"),
    ],
)
def test_render_refuses(override: dict[str, Any], message: str) -> None:
    helm = _tools.helm()
    with pytest.raises(helm.HelmError) as err:
        _tools.render(override)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        {"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False}},
        {"terminationGracePeriodSeconds": 30},
        {"kafka": {"securityProtocol": "SSL_PLAINTEXT"}},
        {"kafka": {"brokers": "kafka"}},
        {"probes": {"startup": {"budgetSeconds": 10, "periodSeconds": 10}}},
        {"replicaCount": 0},
        {"modle": {}},
    ],
)
def test_schema_refuses(override: dict[str, Any]) -> None:
    helm = _tools.helm()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(override)
