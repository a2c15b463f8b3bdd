"""The Kubernetes manifests render (kustomize, through kubectl) and validate offline:
core kinds against the Kubernetes OpenAPI schemas (kubernetes-validate), the operators'
custom resources structurally; plus the conventions SREs expect of every pod."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.common.settings import Settings
from services.common.topics import (
    COUPONS,
    GROUPBUY,
    ORDERS,
    SECKILL_RESERVATIONS,
    all_topics,
    partitions,
    topic_specs,
)
from services.notify.app import CONSUMED_TOPICS as NOTIFY_CONSUMES
from tests.deploy.tools import require
from tools.deploy import DEPLOY, K8S_GATEWAY, ROOT, stale_files
from tools.stack import SERVICES

OVERLAYS = ("dev", "prod")
YAML = ("deploy", ".yamllint.yaml")
K8S_VERSION = kubernetes_validate.latest_version()
KUBECTL_HOW = (
    "kubectl >= 1.27 (kustomize v5) renders the manifests; it is part of the project's "
    "machine image (see docs/deploy.md)"
)
SERVICE_NAMES = {svc.name for svc in SERVICES}
# The topics each Deployment's Kafka consumers read (services/*/app.py, seckill/background.py).
CONSUMES = {
    "seckill-worker": (ORDERS,),
    "order": (SECKILL_RESERVATIONS, GROUPBUY),
    "groupbuy": (GROUPBUY, ORDERS),
    "notify": NOTIFY_CONSUMES,
    # coupon-record on coupons, coupon-orders on orders (docs/coupons.md).
    "coupon": (COUPONS, ORDERS),
}
# kube-prometheus-stack's Prometheus selects monitors and rules by `release: <its Helm
# release name>` (deploy/k8s/base/monitoring/kustomization.yaml; docs/deploy.md).
PROMETHEUS_RELEASE = "prometheus"
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
# Custom resources: apiVersion/kind -> the spec paths each must have.
CRDS: dict[tuple[str, str], list[str]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): ["kafka.listeners", "kafka.config", "entityOperator"],
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): ["replicas", "roles", "storage"],
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): ["topicName", "partitions", "replicas"],
    ("postgresql.cnpg.io/v1", "Cluster"): ["instances", "storage.size", "bootstrap.initdb"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["selector", "endpoints"],
    ("monitoring.coreos.com/v1", "PodMonitor"): ["selector", "podMetricsEndpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["groups"],
}


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = require("kubectl", KUBECTL_HOW)
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(DEPLOY / "k8s" / "overlays" / overlay))


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(obj, dict) and part in obj, f"missing {dotted}"
        obj = obj[part]
    return obj


def validate_structure(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    assert key in CRDS, f"unknown custom resource {key}"
    assert doc["metadata"]["name"]
    for path in CRDS[key]:
        dig(doc["spec"], path)
    if doc["kind"] == "KafkaTopic":
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "flashsale"
        assert isinstance(doc["spec"]["partitions"], int) and doc["spec"]["partitions"] > 0
    if doc["kind"] == "PrometheusRule":
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                assert rule["expr"] and ("alert" in rule or "record" in rule)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_and_every_manifest_validates(overlay: str) -> None:
    docs = rendered(overlay)
    core = 0
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            core += 1
        except kubernetes_validate.SchemaNotFoundError:
            validate_structure(doc)
        except kubernetes_validate.ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata'].get('name')}"
            pytest.fail(f"{overlay}: {name}: {exc.message} at {list(exc.path)}")
    assert core >= 20
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {"flashsale-dev" if overlay == "dev" else "flashsale"}


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = next(d for d in rendered("dev") if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_with_probes_and_limits(overlay: str) -> None:
    docs = rendered(overlay)
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
    assert {w["metadata"]["name"] for w in workloads} >= SERVICE_NAMES | {"gateway", "redis"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        for container in pod["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container, name
    pdbs = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(docs, "PodDisruptionBudget")
    }
    assert pdbs >= {w["metadata"]["name"] for w in workloads}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_reaches_every_service_container(overlay: str) -> None:
    docs = rendered(overlay)
    config = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    wanted = {f.name.upper() for f in fields(Settings)}
    for deployment in of_kind(docs, "Deployment"):
        if deployment["metadata"]["name"] not in SERVICE_NAMES:
            continue
        (app,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]]
        names = {e["name"] for e in app.get("env", [])}
        for source in app.get("envFrom", []):
            names |= set(config[source["configMapRef"]["name"]])
        assert wanted - names == set(), deployment["metadata"]["name"]
        assert names - wanted == set(), "variables that are no setting"
        probe = app["readinessProbe"]["httpGet"]
        assert (probe["path"], probe["port"]) == ("/readyz", "ops")


def container_settings(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    """What a Deployment's app container gets from the ConfigMaps and plain `env` values
    (the latter win, as in Kubernetes); values from Secrets are left out."""
    config = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name]
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    values: dict[str, str] = {}
    for source in app.get("envFrom", []):
        values |= config[source["configMapRef"]["name"]]
    return values | {e["name"]: e["value"] for e in app.get("env", []) if "value" in e}


def test_prod_sends_real_messages_with_the_provider_url_and_identity_s_shared_token() -> None:
    docs = rendered("prod")
    assert Settings.from_env(container_settings(docs, "notify")).notify_channel == "http"
    (notify,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "notify"]
    (app,) = notify["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in app["env"]}
    ref = env["NOTIFY_PROVIDER_URL"]["valueFrom"]["secretKeyRef"]
    # Required: a pod without it must not start and then fail every send.
    assert (ref["name"], ref["key"], ref.get("optional", False)) == (
        "flashsale-secrets",
        "NOTIFY_PROVIDER_URL",
        False,
    )
    # The access token is identity's, shared in Redis: a fixed one is only an optional
    # override (a non-WeChat provider), never required.
    token = env["NOTIFY_ACCESS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token.get("optional") is True
    dev = Settings.from_env(container_settings(rendered("dev"), "notify"))
    assert dev.notify_channel == "log"


# Settings that are secrets: from the Secret flashsale-secrets only, never a ConfigMap.
SECRET_SETTINGS = {
    "JWT_SECRET",
    "JWT_KEY_ID",
    "JWT_VERIFY_KEYS",
    "PAYMENT_WEBHOOK_SECRET",
    "NOTIFY_ACCESS_TOKEN",
    "WECHAT_SECRET",
}


def secret_refs(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, dict[str, Any]]:
    """Variable -> secretKeyRef of a Deployment's app container."""
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name]
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in app.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_reach_the_services_from_the_secret_only(overlay: str) -> None:
    docs = rendered(overlay)
    config = {k for c in of_kind(docs, "ConfigMap") for k in c.get("data", {})}
    assert SECRET_SETTINGS & config == set()
    # The dev overlay generates the Secret: kustomize appends a hash to its name.
    secret = re.compile(r"flashsale-secrets(-[a-z0-9]{10})?")
    for name in SERVICE_NAMES:
        refs = secret_refs(docs, name)
        for setting in SECRET_SETTINGS:
            assert secret.fullmatch(refs[setting]["name"]), (name, setting)
            assert refs[setting]["key"] == setting, (name, setting)


def test_prod_logs_shoppers_in_at_wechat_with_the_mini_program_s_secret() -> None:
    prod = rendered("prod")
    identity = Settings.from_env(container_settings(prod, "identity"))
    assert identity.wechat_api_url == "https://api.weixin.qq.com"
    # Required in prod: an identity pod without it must not start and fail every login.
    assert secret_refs(prod, "identity")["WECHAT_SECRET"].get("optional", False) is False
    # Elsewhere optional: the other services never use it.
    assert secret_refs(prod, "order")["WECHAT_SECRET"]["optional"] is True
    dev = rendered("dev")
    (secret,) = [
        s for s in of_kind(dev, "Secret") if s["metadata"]["name"].startswith("flashsale-secrets")
    ]
    assert "WECHAT_SECRET" in secret["data"]
    # identity and notify keep and read the shared access_token under the same appid.
    for docs in (prod, dev):
        appids = {
            Settings.from_env(container_settings(docs, n)).wechat_appid for n in SERVICE_NAMES
        }
        assert len(appids) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_fake_wechat_provider_is_deployed_nowhere(overlay: str) -> None:
    for deployment in of_kind(rendered(overlay), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            argv = container.get("args", []) + container.get("command", [])
            assert "tools.fake_wechat" not in argv, deployment["metadata"]["name"]


def policies(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}


def monitoring_ports(docs: tuple[dict[str, Any], ...]) -> set[int]:
    rules = policies(docs)["services-from-gateway-and-monitoring"]["spec"]["ingress"]
    return {
        port["port"]
        for rule in rules
        if any("namespaceSelector" in peer for peer in rule["from"])
        for port in rule["ports"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_runs_as_make_up_runs_it_and_is_scraped_on_its_ops_port(
    overlay: str,
) -> None:
    docs = rendered(overlay)
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    scraped = monitoring_ports(docs)
    (denied,) = policies(docs)["flashsale-default-deny"]["spec"]["podSelector"]["matchExpressions"]
    assert SERVICE_NAMES <= set(denied["values"])
    (from_gateway,) = [
        rule
        for rule in policies(docs)["services-from-gateway-and-monitoring"]["spec"]["ingress"]
        if rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    ]
    api_ports = {port["port"] for port in from_gateway["ports"]}
    for svc in SERVICES:
        (app,) = deployments[svc.name]["spec"]["template"]["spec"]["containers"]
        assert app["args"] == ["python", "-m", svc.module], svc.name
        http = [p["port"] for p in services[svc.name]["spec"]["ports"] if p["name"] == "http"]
        assert set(http) <= api_ports, f"{svc.name}: the gateway may not reach its API"
        values = container_settings(docs, svc.name)
        assert {k: values.get(k) for k in svc.env} == dict(svc.env), svc.name
        port = getattr(Settings.from_env(values), svc.ops_port)
        ports = {p["name"]: p["containerPort"] for p in app["ports"]}
        assert ports["ops"] == port, svc.name
        (ops,) = [p for p in services[svc.name]["spec"]["ports"] if p["name"] == "ops"]
        assert (ops["port"], ops["targetPort"]) == (port, "ops"), svc.name
        assert port in scraped, f"{svc.name}: Prometheus may not reach port {port}"


def test_the_seckill_worker_does_the_api_s_background_work_on_two_pods() -> None:
    docs = rendered("prod")
    assert Settings.from_env(container_settings(docs, "seckill")).seckill_embedded_worker is False
    (worker,) = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "seckill-worker"
    ]
    assert worker["spec"]["replicas"] >= 2
    (service,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "seckill-worker"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["ops"]  # no API
    (redis_clients,) = policies(docs)["redis-from-its-clients"]["spec"]["ingress"]
    (selector,) = redis_clients["from"][0]["podSelector"]["matchExpressions"]
    assert "seckill-worker" in selector["values"]
    # identity keeps the WeChat access_token in Redis; notify reads it there.
    assert {"identity", "notify"} <= set(selector["values"])


# Sysctls the kubelet allows any pod (Kubernetes' "safe" set); others need the nodes'
# allowedUnsafeSysctls, which a development cluster (kind, minikube) does not set.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
}


def pod_sysctls(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name]
    pod = deployment["spec"]["template"]["spec"]
    return {s["name"]: s["value"] for s in pod.get("securityContext", {}).get("sysctls", [])}


@pytest.mark.parametrize("api", ["seckill", "coupon"])
def test_a_rush_api_s_listen_queue_is_not_capped_below_its_backlog_in_prod(api: str) -> None:
    """The seckill API takes a sale's opening burst, the coupon API a claim rush's."""
    docs = rendered("prod")
    backlog = Settings.from_env(container_settings(docs, api)).http_listen_backlog
    assert backlog >= 4096  # production-sized; aiohttp's own default is 128
    assert int(pod_sysctls(docs, api)["net.core.somaxconn"]) >= backlog


def test_the_dev_overlay_asks_for_no_sysctl_a_stock_kubelet_refuses() -> None:
    docs = rendered("dev")
    for deployment in of_kind(docs, "Deployment"):
        unsafe = set(pod_sysctls(docs, deployment["metadata"]["name"])) - SAFE_SYSCTLS
        assert unsafe == set(), deployment["metadata"]["name"]


def autoscalers(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Deployment name -> the HorizontalPodAutoscaler that scales it."""
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    for hpa in hpas:
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    return {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_deployment_an_autoscaler_manages_sets_replicas(overlay: str) -> None:
    """A replicas value would be re-applied by every `kubectl apply`, fighting the HPA."""
    docs = rendered(overlay)
    scaled = autoscalers(docs)
    assert set(scaled) == {"seckill", "order", "groupbuy", "coupon", "notify", "identity"}
    for deployment in of_kind(docs, "Deployment"):
        if deployment["metadata"]["name"] in scaled:
            assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_scale_no_further_than_the_partitions_of_what_they_consume(
    overlay: str,
) -> None:
    docs = rendered(overlay)
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    for name, hpa in autoscalers(docs).items():
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], name
        for topic in CONSUMES.get(name, ()):
            assert spec["maxReplicas"] <= topics[topic], f"{name}: {topic}"


def test_seckill_autoscales_and_only_the_gateway_is_open_to_everyone() -> None:
    docs = rendered("prod")
    hpa = autoscalers(docs)["seckill"]
    assert hpa["spec"]["minReplicas"] >= 2
    policies = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    open_to_all = [
        n for n, p in policies.items() if any("from" not in r for r in p["spec"].get("ingress", []))
    ]
    assert open_to_all == ["gateway-from-anywhere"]
    (gateway,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "gateway"]
    assert gateway["spec"]["type"] == "LoadBalancer"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admin_side_is_a_cluster_ip_service_only_admin_clients_may_reach(
    overlay: str,
) -> None:
    docs = rendered(overlay)
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "Service")}
    admin_port = int(K8S_GATEWAY.admin_listen)
    # The public Service carries the public server only; the admin one is never exposed.
    assert [p["targetPort"] for p in services["gateway"]["ports"]] == ["http"]
    admin = services["gateway-admin"]
    assert admin["type"] == "ClusterIP"
    assert admin["selector"] == {"app.kubernetes.io/name": "gateway"}
    assert [(p["port"], p["targetPort"]) for p in admin["ports"]] == [(admin_port, "admin")]
    assert of_kind(docs, "Ingress") == []
    pod = pod_template(docs, "Deployment", "gateway")
    (nginx,) = [c for c in pod["spec"]["containers"] if c["name"] == "nginx"]
    assert {"name": "admin", "containerPort": admin_port} in nginx["ports"]
    # Who may connect to the admin port: only pods labelled as admin clients.
    gateway_labels = pod["metadata"]["labels"]
    peers = [
        peer
        for policy in of_kind(docs, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], gateway_labels)
        for rule in policy["spec"].get("ingress", [])
        if admin_port in {port["port"] for port in rule.get("ports", [])}
        for peer in rule.get("from", [{}])
    ]
    assert peers == [{"podSelector": {"matchLabels": {"flashsale/admin-client": "true"}}}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_coupon_service_is_reached_by_the_gateway_only_and_reaches_redis(overlay: str) -> None:
    docs = rendered(overlay)
    pod = pod_template(docs, "Deployment", "coupon")
    labels = pod["metadata"]["labels"]
    (app,) = pod["spec"]["containers"]
    settings = Settings.from_env(container_settings(docs, "coupon"))
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert ports == {"http": settings.coupon_port, "ops": settings.coupon_ops_port}
    # Who may connect to its API port: the gateway's pods, nobody else.
    peers = [
        peer
        for policy in of_kind(docs, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        if settings.coupon_port in {port["port"] for port in rule.get("ports", [])}
        for peer in rule.get("from", [{}])
    ]
    assert peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    assert ports_open_to_monitoring(docs, labels) >= {settings.coupon_ops_port}
    # Its claims and grants run in Redis: the Redis pod lets it in.
    redis = pod_template(docs, "StatefulSet", "redis")["metadata"]["labels"]
    assert any(
        selects(peer["podSelector"], labels)
        for policy in of_kind(docs, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], redis)
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "podSelector" in peer
    )


def test_kafka_topics_match_the_code_and_monitors_cover_every_service() -> None:
    docs = rendered("prod")
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    assert topics == {name: partitions(name) for name in all_topics()}
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    assert set(selector["values"]) == SERVICE_NAMES
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for name in SERVICE_NAMES:
        assert "ops" in {p["name"] for p in services[name]["spec"]["ports"]}
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"]
    dashboards = [
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "flashsale-dashboards"
    ]
    assert dashboards and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_monitor_and_rule_carries_the_label_the_prometheus_operator_selects(
    overlay: str,
) -> None:
    docs = rendered(overlay)
    monitoring = [d for d in docs if d["kind"] in MONITORING_KINDS]
    assert {d["kind"] for d in monitoring} == set(MONITORING_KINDS)
    for doc in monitoring:
        assert doc["metadata"]["labels"]["release"] == PROMETHEUS_RELEASE, doc["metadata"]["name"]
    assert f"release: {PROMETHEUS_RELEASE}" in (ROOT / "docs" / "deploy.md").read_text()


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In) on pod labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def ports_open_to_monitoring(docs: tuple[dict[str, Any], ...], labels: dict[str, str]) -> set[int]:
    """Ports the NetworkPolicies open to the monitoring namespace on a pod with these labels."""
    return {
        port["port"]
        for policy in of_kind(docs, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels")
            == {"kubernetes.io/metadata.name": "monitoring"}
            for peer in rule.get("from", [])
        )
        for port in rule["ports"]
    }


def pod_template(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    (workload,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return dict(workload["spec"]["template"])


# Strimzi names the Kafka exporter's Deployment <cluster>-kafka-exporter and its metrics
# port tcp-prometheus (9404).
KAFKA_EXPORTER_LABELS = {"strimzi.io/name": "flashsale-kafka-exporter"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_kafka_and_the_gateway_are_scraped_through_exporters(overlay: str) -> None:
    docs = rendered(overlay)
    monitors = {m["metadata"]["name"]: m["spec"] for m in of_kind(docs, "PodMonitor")}
    # The two sidecars: a container port `metrics`, scraped by a PodMonitor, let through.
    for kind, name, image, port in (
        ("StatefulSet", "redis", "oliver006/redis_exporter:", 9121),
        ("Deployment", "gateway", "nginx/nginx-prometheus-exporter:", 9113),
    ):
        pod = pod_template(docs, kind, name)
        (exporter,) = [c for c in pod["spec"]["containers"] if c["image"].startswith(image)]
        assert {"name": "metrics", "containerPort": port} in exporter["ports"], name
        (monitor,) = [
            m for m in monitors.values() if selects(m["selector"], pod["metadata"]["labels"])
        ]
        assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["metrics"], name
        assert port in ports_open_to_monitoring(docs, pod["metadata"]["labels"]), name
    gateway = pod_template(docs, "Deployment", "gateway")["spec"]["containers"]
    (exporter,) = [c for c in gateway if c["name"] == "exporter"]
    scrape_uri = f"--nginx.scrape-uri=http://{K8S_GATEWAY.status_listen}/stub_status"
    assert scrape_uri in exporter["args"]
    # Strimzi's Kafka exporter, from the Kafka resource.
    (kafka,) = of_kind(docs, "Kafka")
    assert kafka["spec"]["kafkaExporter"]["groupRegex"] == ".*"
    (monitor,) = [m for m in monitors.values() if selects(m["selector"], KAFKA_EXPORTER_LABELS)]
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["tcp-prometheus"]
    assert 9404 in ports_open_to_monitoring(docs, KAFKA_EXPORTER_LABELS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_but_our_own_is_pinned_to_a_version(overlay: str) -> None:
    docs = rendered(overlay)
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            name, _, tag = container["image"].rpartition(":")
            if name.endswith("flashsale"):
                continue  # ours: each overlay names its tag (dev builds `flashsale:dev`)
            assert name and re.search(r"\d", tag) and tag != "latest", container["image"]


def test_generated_files_are_up_to_date() -> None:
    assert stale_files() == [], "run: python -m tools.deploy generate"


def test_yamllint_passes_on_the_repository_yaml() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "-c",
            str(ROOT / ".yamllint.yaml"),
            "--strict",
            "deploy",
            ".yamllint.yaml",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_strimzi_topics_have_the_partitions_and_retention_bootstrap_creates_locally() -> None:
    docs = rendered("prod")
    declared = {
        t["spec"]["topicName"]: (
            t["spec"]["partitions"],
            {k: str(v) for k, v in t["spec"]["config"].items() if k != "min.insync.replicas"},
        )
        for t in of_kind(docs, "KafkaTopic")
    }
    assert declared == {spec.name: (spec.partitions, spec.config()) for spec in topic_specs()}
    config = {k: v for c in of_kind(docs, "ConfigMap") for k, v in c.get("data", {}).items()}
    # Strimzi owns the cluster's topics: the services' bootstrap must never create them.
    assert config["KAFKA_CREATE_TOPICS"] == "false"
