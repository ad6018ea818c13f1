"""helm lint and helm template over the CI scenarios, and the chart's own guard rails."""

from __future__ import annotations

import base64

import pytest

from tests.chart.conftest import (
    CHART,
    SCENARIOS,
    component,
    parse,
    run_helm,
    template,
    values_file,
)

CREDENTIALS = (
    "--set",
    "cassandra.auth.password=app",
    "--set",
    "cassandra.auth.adminPassword=admin",
)


def test_every_required_scenario_exists():
    assert {"default", "ha", "external-cassandra"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm, scenario):
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(values_file(scenario)))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_template_renders_every_component(rendered, scenario):
    label = "app.kubernetes.io/component"
    components = {o["metadata"]["labels"][label] for o in rendered[scenario]}
    assert {"gateway", "serving", "training", "schema", "models", "test"} <= components
    assert ("cassandra" in components) == (scenario != "external-cassandra")


def test_bare_install_generates_passwords_and_keeps_their_secret(helm):
    (secret,) = [o for o in parse(template(helm).stdout) if o["kind"] == "Secret"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    passwords = [base64.b64decode(v).decode() for v in secret["data"].values()]
    assert len(passwords) == 2 and passwords[0] != passwords[1]
    assert all(len(p) == 32 and p.isalnum() for p in passwords)


def test_given_passwords_win_over_generated_ones(helm):
    (secret,) = [o for o in parse(template(helm, *CREDENTIALS).stdout) if o["kind"] == "Secret"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"cassandra-password": "app", "cassandra-admin-password": "admin"}


def test_external_cassandra_needs_a_password_or_an_existing_secret(helm):
    external = ("--set", "cassandra.enabled=false", "--set", "cassandra.external.hosts={db}")
    result = template(helm, *external, check=False)
    assert result.returncode != 0 and "cassandra.auth.existingSecret" in result.stderr
    assert template(helm, *external, "--set", "cassandra.auth.password=p").returncode == 0


def test_schema_rejects_latest_tags_and_unknown_keys(helm):
    latest = template(helm, *CREDENTIALS, "--set", "images.gateway.tag=latest", check=False)
    assert latest.returncode != 0 and "/images/gateway/tag" in latest.stderr
    typo = template(helm, *CREDENTIALS, "--set", "gateway.replicas=3", check=False)
    assert typo.returncode != 0 and "replicas" in typo.stderr


def test_kube_version_below_minimum_is_refused(helm):
    result = template(helm, *CREDENTIALS, "--kube-version", "1.26.0", check=False)
    assert result.returncode != 0 and "kubeVersion" in result.stderr


def models_config(objects: list[dict]) -> str:
    config_maps = [o for o in objects if o["kind"] == "ConfigMap" and "models.config" in o["data"]]
    assert len(config_maps) == 1
    return config_maps[0]["data"]["models.config"]


def test_version_policy_pins_and_labels_versions(helm):
    objects = parse(
        template(
            helm,
            *CREDENTIALS,
            "--set",
            "serving.versionPolicy.type=specific",
            "--set",
            "serving.versionPolicy.versions={3,4}",
            "--set",
            "serving.versionPolicy.labels.stable=3",
        ).stdout
    )
    config = models_config(objects)
    assert "specific { versions: 3 versions: 4 }" in config
    assert 'version_labels { key: "stable" value: 3 }' in config
    assert 'base_path: "/models/mnist"' in config


def test_version_policy_refuses_inconsistent_settings(helm):
    specific = ("--set", "serving.versionPolicy.type=specific")
    empty = template(helm, *CREDENTIALS, *specific, check=False)
    assert empty.returncode != 0 and "versionPolicy.versions" in empty.stderr
    dangling = template(
        helm,
        *CREDENTIALS,
        "--set",
        "serving.versionPolicy.type=specific",
        "--set",
        "serving.versionPolicy.versions={3}",
        "--set",
        "serving.versionPolicy.labels.canary=4",
        check=False,
    )
    assert dangling.returncode != 0 and "labels.canary" in dangling.stderr


def training_job_name(helm, *extra: str) -> str:
    return component(parse(template(helm, *CREDENTIALS, *extra).stdout), "Job", "training")[
        "metadata"
    ]["name"]


def test_training_job_is_renamed_only_when_training_changes(helm):
    # A Job's pod template is immutable: an upgrade that changes training must
    # create a new Job, and one that does not must leave the finished Job alone.
    base = training_job_name(helm)
    assert training_job_name(helm, "--set", "gateway.replicaCount=5") == base
    assert training_job_name(helm, "--set", "training.generation=2") != base
    assert training_job_name(helm, "--set", "training.epochs=9") != base
    assert training_job_name(helm, "--set", "images.train.tag=0.2.0") != base
