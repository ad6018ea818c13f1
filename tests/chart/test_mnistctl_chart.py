"""The chart's side of mnistctl: the pinned model config and the opt-in operator Role.

What `mnistctl pin N` writes must be what the chart renders for that pin, byte for byte,
or the next `helm upgrade` would change the file TF Serving reads; the lookup that finds
the pin needs a cluster and is exercised in tests/cluster/test_mnistctl.py.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from mnistctl import modelconfig
from tests.chart.conftest import NAMESPACE, RELEASE, SCENARIOS, by_kind, parse, template
from tests.unit.test_mnistctl import LABELLED, LATEST

POLICIES = {
    "default": (),
    "latest-2": ("--set", "serving.versionPolicy.latestCount=2"),
    "labelled": (
        "--set", "serving.versionPolicy.type=specific",
        "--set", "serving.versionPolicy.versions={3,4}",
        "--set", "serving.versionPolicy.labels.stable=3",
        "--set", "serving.versionPolicy.labels.canary=4",
    ),
    "all": ("--set", "serving.versionPolicy.type=all"),
}  # fmt: skip
OPERATOR = ("--set", "operator.rbac.create=true")
SUBJECTS = (
    "--set", "operator.rbac.subjects[0].kind=Group",
    "--set", "operator.rbac.subjects[0].name=mnist-operators",
    "--set", "operator.rbac.subjects[0].apiGroup=rbac.authorization.k8s.io",
)  # fmt: skip


def model_config_map(objects: list[dict]) -> dict:
    found = [o for o in by_kind(objects, "ConfigMap") if "models.config" in o.get("data", {})]
    assert len(found) == 1
    return found[0]


def test_without_a_pin_both_keys_hold_the_release_policy(rendered):
    for scenario in SCENARIOS:
        config_map = model_config_map(rendered[scenario])
        data = config_map["data"]
        assert data[modelconfig.CONFIG_KEY] == data[modelconfig.RELEASE_KEY]
        assert modelconfig.PIN_ANNOTATION not in config_map["metadata"].get("annotations", {})


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_the_pin_mnistctl_writes_is_the_charts_rendering_of_it(helm, policy):
    release_text = model_config_map(parse(template(helm, *POLICIES[policy]).stdout))["data"][
        modelconfig.RELEASE_KEY
    ]
    pinned_by_chart = model_config_map(
        parse(
            template(
                helm,
                "--set", "serving.versionPolicy.type=specific",
                "--set", "serving.versionPolicy.versions={5}",
            ).stdout
        )
    )["data"][modelconfig.CONFIG_KEY]  # fmt: skip
    assert modelconfig.pinned(release_text, 5) == pinned_by_chart


def test_the_unit_tests_texts_are_the_charts(helm):
    def text(*args: str) -> str:
        return model_config_map(parse(template(helm, *args).stdout))["data"]["models.config"]

    assert text() == LATEST + "\n"
    assert text(*POLICIES["labelled"]) == LABELLED + "\n"


def test_the_operator_role_is_opt_in(rendered):
    for scenario in SCENARIOS:
        assert not by_kind(rendered[scenario], "Role")
        assert not by_kind(rendered[scenario], "RoleBinding")


def test_the_operator_role_names_real_objects_and_binds_only_given_subjects(helm):
    objects = parse(template(helm, *OPERATOR).stdout)
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["name"] == f"{RELEASE}-mnist-operator"
    assert not by_kind(objects, "RoleBinding")
    assert not by_kind(objects, "ClusterRole")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    ports = {
        (o["metadata"]["name"], p["name"])
        for o in by_kind(objects, "Service")
        for p in o["spec"]["ports"]
    }
    kinds = {
        "deployments/scale": "Deployment",
        "horizontalpodautoscalers": "Deployment",  # an HPA is named like its Deployment
        "configmaps": "ConfigMap",
        "services": "Service",
    }
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not {"secrets", "pods/exec", "pods/attach", "pods/portforward"} & set(
            rule["resources"]
        )
        for name in rule.get("resourceNames", []):
            (resource,) = rule["resources"]
            if resource == "services/proxy":
                assert tuple(name.split(":")) in ports, name
            elif resource == "namespaces":
                assert name == NAMESPACE
            else:
                assert (kinds[resource], name) in names, (resource, name)
    verbs = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # The writes mnistctl makes, and no other.
    writes = {(r, v) for r, v in verbs if v not in ("get", "list")}
    assert writes == {
        ("jobs", "create"),
        ("deployments/scale", "patch"),
        ("horizontalpodautoscalers", "patch"),
        ("configmaps", "patch"),
        ("services/proxy", "create"),
    }
    bound = parse(template(helm, *OPERATOR, *SUBJECTS).stdout)
    (binding,) = by_kind(bound, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "Group", "name": "mnist-operators", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    for obj in (role, binding):
        kubernetes_validate.validate(obj, "1.32", strict=True)


def test_the_schema_refuses_an_unknown_subject_kind(helm):
    result = template(
        helm, *OPERATOR, "--set", "operator.rbac.subjects[0].kind=Robot",
        "--set", "operator.rbac.subjects[0].name=r2", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "kind" in result.stderr
