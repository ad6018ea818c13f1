"""Policy checks over the rendered manifests of every CI scenario.

What a platform reviewer looks for: hardened containers with resources and probes,
selectors that select, references that resolve, NetworkPolicies around every pod,
disruption budgets, autoscalers with targets, pinned images.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.chart.conftest import (
    ROOT,
    SCENARIOS,
    by_kind,
    component,
    containers,
    named,
    pod_labels,
    pod_specs,
)

SELECTOR_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}
LONG_RUNNING = ("Deployment", "StatefulSet")
# Secrets the scenarios expect to exist already (created outside the chart).
EXTERNAL_SECRETS = {
    "default": set(),
    "ha": {"mnist-cassandra-auth", "mnist-tls"},
    "external-cassandra": {"mnist-cassandra-credentials"},
}

scenarios = pytest.mark.parametrize("scenario", SCENARIOS)


def where(obj: dict, container: dict | None = None) -> str:
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    return f"{name}[{container['name']}]" if container else name


@scenarios
def test_containers_have_requests_and_limits(rendered, scenario):
    for obj, spec in pod_specs(rendered[scenario]):
        for c in containers(spec):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), where(obj, c)


@scenarios
def test_containers_are_hardened(rendered, scenario):
    for obj, spec in pod_specs(rendered[scenario]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where(obj)
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where(obj)
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where(obj, c)
            assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, where(obj, c)
            assert sc["allowPrivilegeEscalation"] is False, where(obj, c)
            assert sc["readOnlyRootFilesystem"] is True, where(obj, c)
            assert sc["capabilities"]["drop"] == ["ALL"], where(obj, c)
            assert "add" not in sc["capabilities"], where(obj, c)
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where(obj, c)


@scenarios
def test_long_running_containers_have_probes(rendered, scenario):
    for obj, spec in pod_specs(rendered[scenario]):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, where(obj, c)


def test_probes_mean_what_they_say(rendered):
    objects = rendered["default"]
    gateway = component(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    assert gateway["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    serving = component(objects, "Deployment", "serving")["spec"]["template"]["spec"]
    # Model status answers 200 in every state; metadata needs a loaded version.
    readiness = serving["containers"][0]["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/v1/models/mnist/metadata"
    cassandra = component(objects, "StatefulSet", "cassandra")["spec"]["template"]["spec"]
    assert cassandra["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == [
        "nodetool",
        "drain",
    ]


@scenarios
def test_service_accounts_exist_and_mount_no_token(rendered, scenario):
    objects = rendered[scenario]
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    for sa in accounts.values():
        assert sa["automountServiceAccountToken"] is False, where(sa)
    for obj, spec in pod_specs(objects):
        assert spec["serviceAccountName"] in accounts, where(obj)
        assert spec["automountServiceAccountToken"] is False, where(obj)


@scenarios
def test_selectors_use_stable_labels_and_match_their_pods(rendered, scenario):
    objects = rendered[scenario]
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            selector = obj["spec"]["selector"]["matchLabels"]
            assert set(selector) == SELECTOR_KEYS, where(obj)
            assert selector.items() <= pod_labels(obj).items(), where(obj)
        if obj["kind"] == "Service":
            assert set(obj["spec"]["selector"]) == SELECTOR_KEYS, where(obj)
        if obj["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if obj["kind"] == "PodDisruptionBudget" else "podSelector"
            assert set(obj["spec"][key]["matchLabels"]) == SELECTOR_KEYS, where(obj)


def selected(objects: list[dict], selector: dict) -> list[tuple[dict, dict]]:
    return [
        (obj, spec)
        for obj, spec in pod_specs(objects)
        if selector.items() <= pod_labels(obj).items()
    ]


@scenarios
def test_every_service_selects_pods_with_its_target_ports(rendered, scenario):
    objects = rendered[scenario]
    for svc in by_kind(objects, "Service"):
        pods = selected(objects, svc["spec"]["selector"])
        assert pods, f"{where(svc)} selects no pods"
        for obj, spec in pods:
            names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in names, f"{where(svc)} -> {where(obj)}"


@scenarios
def test_every_pod_is_isolated_by_a_network_policy(rendered, scenario):
    objects = rendered[scenario]
    policies = by_kind(objects, "NetworkPolicy")
    for obj, _ in pod_specs(objects):
        covering = [
            p
            for p in policies
            if p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(obj).items()
        ]
        assert covering, f"{where(obj)} has no NetworkPolicy"
        types = {t for p in covering for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, where(obj)
    for policy in policies:
        dns = [
            rule
            for rule in policy["spec"].get("egress", [])
            if {"protocol": "UDP", "port": 53} in rule.get("ports", [])
        ]
        assert dns, f"{where(policy)} blocks DNS"


def ingress_sources(policy: dict, port: int) -> list[str]:
    """Components allowed in on a port ("*" for a rule without sources)."""
    sources = []
    for rule in policy["spec"].get("ingress", []):
        if not any(p["port"] == port for p in rule.get("ports", [])):
            continue
        if "from" not in rule:
            sources.append("*")
        for peer in rule.get("from", []):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            sources.append(labels.get("app.kubernetes.io/component", "?"))
    return sources


@scenarios
def test_network_flows_are_the_intended_ones(rendered, scenario):
    objects = rendered[scenario]
    serving = component(objects, "NetworkPolicy", "serving")
    assert ingress_sources(serving, 8501) == ["gateway"]
    assert ingress_sources(serving, 8500) == ["gateway"]
    if scenario == "external-cassandra":
        assert not by_kind(objects, "StatefulSet")
        return
    cassandra = component(objects, "NetworkPolicy", "cassandra")
    # The retraining CronJob (ha) reads the labelled predictions as a read-only role.
    retraining = ["training"] if by_kind(objects, "CronJob") else []
    assert sorted(ingress_sources(cassandra, 9042)) == [
        "cassandra-roles",
        "gateway",
        "schema",
        *retraining,
    ]
    assert ingress_sources(cassandra, 7000) == ["cassandra"]
    assert ingress_sources(cassandra, 7001) == ["cassandra"]


@scenarios
def test_disruption_budgets_cover_the_long_running_workloads(rendered, scenario):
    objects = rendered[scenario]
    budgets = by_kind(objects, "PodDisruptionBudget")
    for obj in objects:
        if obj["kind"] in LONG_RUNNING:
            assert any(
                b["spec"]["selector"]["matchLabels"] == obj["spec"]["selector"]["matchLabels"]
                for b in budgets
            ), f"{where(obj)} has no PodDisruptionBudget"


@scenarios
def test_autoscalers_target_deployments_that_start_at_their_minimum(rendered, scenario):
    objects = rendered[scenario]
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    if scenario == "ha":
        assert {h["metadata"]["labels"]["app.kubernetes.io/component"] for h in hpas} == {
            "gateway",
            "serving",
        }
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        target = named(objects, ref["kind"], ref["name"])
        # A new Deployment starts at the HPA's minimum, so "helm install --wait" waits
        # for that many; upgrades render the live count instead (tests/cluster).
        assert target["spec"]["replicas"] == hpa["spec"]["minReplicas"], where(target)
        assert target["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


@scenarios
def test_images_are_pinned(rendered, scenario):
    pinned = re.compile(r"^[^:@\s]+(:[\w][\w.-]*)?(@sha256:[a-f0-9]{64})?$")
    for obj, spec in pod_specs(rendered[scenario]):
        for c in containers(spec):
            image = c["image"]
            assert pinned.match(image) and (":" in image or "@" in image), image
            assert not image.endswith(":latest"), where(obj, c)


@scenarios
def test_referenced_secrets_config_maps_and_claims_exist(rendered, scenario):
    objects = rendered[scenario]
    secrets = {s["metadata"]["name"] for s in by_kind(objects, "Secret")}
    secrets |= EXTERNAL_SECRETS[scenario]
    config_maps = {c["metadata"]["name"] for c in by_kind(objects, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in by_kind(objects, "PersistentVolumeClaim")}
    for obj, spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where(obj)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where(obj)
        for c in containers(spec):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, where(obj, c)
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{where(obj, c)}: {ref['name']}"
    for ingress in by_kind(objects, "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            assert tls["secretName"] in secrets


def test_chart_secret_holds_the_keys_the_pods_read(rendered):
    objects = rendered["default"]
    secret = component(objects, "Secret", "cassandra")
    for obj, spec in pod_specs(objects):
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secret["data"], where(obj, c)


@scenarios
def test_schema_job_is_a_post_install_and_post_upgrade_hook(rendered, scenario):
    job = component(rendered[scenario], "Job", "schema")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "gateway.store.schema"] and "--wait" in command


@scenarios
def test_gateway_environment_is_what_gateway_config_reads(rendered, scenario):
    sys.path.insert(0, str(ROOT))
    from gateway.config import ENV_NAMES

    objects = rendered[scenario]
    config = component(objects, "ConfigMap", "gateway")["data"]
    spec = component(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    names = set(config) | {e["name"] for e in spec["containers"][0]["env"]}
    # GUNICORN_CMD_ARGS is read by gunicorn itself.
    assert names - {"GUNICORN_CMD_ARGS"} <= set(ENV_NAMES)
    assert {"SERVING_URL", "MODEL_NAME", "CASSANDRA_HOSTS", "CASSANDRA_CONSISTENCY"} <= names
    serving = component(objects, "Service", "serving")["metadata"]["name"]
    assert config["SERVING_URL"] == f"http://{serving}:8501"


def env_of(obj: dict) -> dict:
    spec = obj["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}


def test_ha_scenario_is_highly_available(rendered):
    objects = rendered["ha"]
    cassandra = component(objects, "StatefulSet", "cassandra")
    assert cassandra["spec"]["replicas"] == 3
    anti = cassandra["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in anti
    gateway_env = env_of(component(objects, "Deployment", "gateway"))
    assert gateway_env["CASSANDRA_REPLICATION_STRATEGY"] == "NetworkTopologyStrategy"
    assert gateway_env["CASSANDRA_REPLICATION_DCS"] == "dc1:3"
    assert gateway_env["CASSANDRA_CONSISTENCY"] == "LOCAL_QUORUM"
    serving_hpa = component(objects, "HorizontalPodAutoscaler", "serving")
    assert serving_hpa["spec"]["minReplicas"] >= 2
    claim = component(objects, "PersistentVolumeClaim", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert component(objects, "CronJob", "training")["spec"]["concurrencyPolicy"] == "Forbid"


def test_cassandra_statefulset_wiring(rendered):
    objects = rendered["ha"]
    sts = component(objects, "StatefulSet", "cassandra")
    headless = named(objects, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    env = env_of(sts)
    seeds = env["CASSANDRA_SEEDS"].split(",")
    name = sts["metadata"]["name"]
    assert seeds == [
        f"{name}-{i}.{headless['metadata']['name']}.mnist-ci.svc.cluster.local" for i in (0, 1)
    ]
    assert env["CASSANDRA_ENDPOINT_SNITCH"] == "GossipingPropertyFileSnitch"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 120


def test_external_cassandra_uses_the_given_hosts(rendered):
    objects = rendered["external-cassandra"]
    env = env_of(component(objects, "Deployment", "gateway"))
    assert env["CASSANDRA_HOSTS"].split(",") == [
        "cassandra-0.db.example.com",
        "cassandra-1.db.example.com",
        "cassandra-2.db.example.com",
    ]
    egress = component(objects, "NetworkPolicy", "gateway")["spec"]["egress"]
    cql = [r for r in egress if {"protocol": "TCP", "port": 9042} in r["ports"]]
    assert cql and cql[0]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


@scenarios
def test_model_volume_survives_uninstall_and_is_shared(rendered, scenario):
    objects = rendered[scenario]
    claim = component(objects, "PersistentVolumeClaim", "models")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    name = claim["metadata"]["name"]
    users = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for o, spec in pod_specs(objects)
        if any(v.get("persistentVolumeClaim", {}).get("claimName") == name for v in spec["volumes"])
    }
    assert {"serving", "training"} <= users
