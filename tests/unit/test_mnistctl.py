"""mnistctl without a cluster: the pin's text, the retrain Job, results, pod reasons, errors.

Objects are the Kubernetes client's own models; the API server itself is only ever the
real one (tests/cluster/test_mnistctl.py). The error paths here need none: no API server
listening, a missing kubeconfig or context, an unreadable image.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Job,
    V1JobCondition,
    V1JobSpec,
    V1JobStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V1PodTemplateSpec,
)
from referencing import Registry, Resource

from mnistctl import cli, modelconfig, predict, training
from mnistctl.errors import EXIT_CODES, EXIT_UNREACHABLE, EXIT_USAGE
from mnistctl.kube import ProxiedError
from mnistctl.output import columns
from mnistctl.status import pod_problem
from tests.support.paths import REPO_ROOT

# What helm/mnist renders for the default policy (tests/chart/test_mnistctl_chart.py checks
# these texts against the chart itself).
LATEST = """model_config_list {
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy {
      latest { num_versions: 1 }
    }
  }
}"""
LABELLED = """model_config_list {
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy {
      specific { versions: 3 versions: 4 }
    }
    version_labels { key: "canary" value: 4 }
    version_labels { key: "stable" value: 3 }
  }
}"""


# ---------- model config ----------


def test_parse_reads_policy_labels_and_model():
    assert modelconfig.parse(LATEST) == {
        "type": "latest",
        "latest_count": 1,
        "labels": {},
        "model": "mnist",
        "base_path": "/models/mnist",
    }
    parsed = modelconfig.parse(LABELLED)
    assert parsed["type"] == "specific" and parsed["versions"] == [3, 4]
    assert parsed["labels"] == {"canary": 4, "stable": 3}
    assert (
        modelconfig.parse(LATEST.replace("latest { num_versions: 1 }", "all {}"))["type"] == "all"
    )


def test_pinned_replaces_the_policy_and_drops_labels():
    text = modelconfig.pinned(LABELLED, 2)
    assert "specific { versions: 2 }" in text
    assert "version_labels" not in text and "versions: 3" not in text
    assert modelconfig.parse(text)["versions"] == [2]
    # Everything else is untouched, line for line.
    assert modelconfig.pinned(LATEST, 7) == LATEST.replace(
        "latest { num_versions: 1 }", "specific { versions: 7 }"
    )


def test_pinned_refuses_what_is_not_a_rendered_config():
    with pytest.raises(modelconfig.ModelConfigError):
        modelconfig.pinned("model_config_list {}", 1)
    with pytest.raises(modelconfig.ModelConfigError):
        modelconfig.pinned(LATEST, 0)


def test_served_versions_follow_the_policy():
    known = [1, 2, 3]
    assert modelconfig.served_versions({"type": "latest", "latest_count": 1}, known) == [3]
    assert modelconfig.served_versions({"type": "latest", "latest_count": 2}, known) == [2, 3]
    assert modelconfig.served_versions({"type": "latest", "latest_count": 1}, []) == []
    assert modelconfig.served_versions({"type": "specific", "versions": [2]}, known) == [2]
    assert modelconfig.served_versions({"type": "all"}, known) == known


# ---------- retrain Job ----------


def _template(command: list[str], args: list[str]) -> V1JobSpec:
    labels = {
        "app.kubernetes.io/instance": "mnist",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "Helm",
        "batch.kubernetes.io/controller-uid": "1234",
        "batch.kubernetes.io/job-name": "mnist-training-abc",
        "controller-uid": "1234",
        "job-name": "mnist-training-abc",
    }
    container = V1Container(name="train", image="mnist-train:0.1.0", command=command, args=args)
    return V1JobSpec(
        backoff_limit=1,
        active_deadline_seconds=7200,
        selector=None,
        template=V1PodTemplateSpec(
            metadata=V1ObjectMeta(labels=labels),
            spec=V1PodSpec(containers=[container], restart_policy="Never"),
        ),
    )


TRAIN_ARGS = ["--export-dir=/models/mnist", "--arch=compact", "--epochs=3", "--min-accuracy=0.97"]


def test_retrain_from_the_cronjob_template_keeps_its_arguments():
    job = training.retrain_job(
        _template(["python", "-m", "training"], TRAIN_ARGS),
        name="mnist-retrain-x",
        labels={"app.kubernetes.io/instance": "mnist"},
        epochs=None,
        source="cronjob/mnist-retrain",
    )
    container = job.spec.template.spec.containers[0]
    assert (container.command, container.args) == (["python", "-m", "training"], TRAIN_ARGS)
    assert job.metadata.name == "mnist-retrain-x"
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "mnistctl"
    assert job.spec.selector is None and job.spec.backoff_limit == 1


def test_retrain_from_the_charts_job_unwraps_train_once_and_sets_epochs():
    script = 'set -eu\nmarker=/models/.trained/mnist-training-abc\npython -m training "$@"\n'
    template = _template(["/bin/sh", "-c"], [script, "train", *TRAIN_ARGS])
    job = training.retrain_job(
        template, name="mnist-retrain-y", labels={}, epochs=5, source="job/mnist-training-abc"
    )
    container = job.spec.template.spec.containers[0]
    assert container.command == ["python", "-m", "training"]
    assert container.args == [*[a for a in TRAIN_ARGS if a != "--epochs=3"], "--epochs=5"]
    pod_labels = job.spec.template.metadata.labels
    assert not set(pod_labels) & set(training.CONTROLLER_LABELS)
    assert pod_labels["app.kubernetes.io/managed-by"] == "mnistctl"
    # The template itself is untouched (a deep copy was changed).
    assert template.template.spec.containers[0].command == ["/bin/sh", "-c"]


def test_retrain_refuses_a_template_it_cannot_read():
    with pytest.raises(cli.CliError, match="cannot derive a training command"):
        training.retrain_job(
            _template(["/entrypoint"], []), name="x", labels={}, epochs=None, source="job/x"
        )


def test_with_epochs_replaces_both_spellings():
    assert training.with_epochs(["--epochs", "3", "--seed=1"], 4) == ["--seed=1", "--epochs=4"]
    assert training.with_epochs(["--seed=1"], None) == ["--seed=1"]


def test_retrain_name_is_a_valid_job_name():
    name = training.retrain_name("x" * 80, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert len(name) <= 63 and name.endswith("-retrain-20260102-030405")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


# ---------- results ----------


def _train_pod(name: str, message: str | None, *, exit_code: int = 0) -> V1Pod:
    terminated = V1ContainerStateTerminated(exit_code=exit_code, message=message)
    status = V1ContainerStatus(
        name="train",
        image="mnist-train",
        image_id="",
        ready=False,
        restart_count=0,
        state=V1ContainerState(terminated=terminated),
    )
    return V1Pod(
        metadata=V1ObjectMeta(name=name),
        status=V1PodStatus(phase="Succeeded", container_statuses=[status]),
    )


def _job(state: str | None) -> V1Job:
    conditions = (
        [V1JobCondition(type=state, status="True", reason="BackoffLimitExceeded")] if state else []
    )
    return V1Job(
        metadata=V1ObjectMeta(
            name="mnist-retrain-1", labels={"app.kubernetes.io/managed-by": "mnistctl"}
        ),
        spec=V1JobSpec(template=V1PodTemplateSpec()),
        status=V1JobStatus(conditions=conditions, active=0 if state else 1),
    )


def test_run_summary_of_an_exported_version():
    message = json.dumps({"result": "exported", "version": 4, "test_accuracy": 0.9912,
                          "min_accuracy": 0.98, "epochs": 3, "arch": "compact"})  # fmt: skip
    run = training.run_summary(_job("Complete"), [_train_pod("p", message)])
    assert (run["state"], run["result"], run["version"]) == ("Complete", "exported", 4)
    assert run["message"] == "exported version 4 (test accuracy 0.9912)"
    assert run["created_by"] == "mnistctl"


def test_run_summary_of_a_refused_model_and_of_silent_runs():
    refused = json.dumps({"result": "refused", "test_accuracy": 0.91, "min_accuracy": 0.98})
    run = training.run_summary(_job("Failed"), [_train_pod("p", refused, exit_code=3)])
    assert run["result"] == "refused" and run["version"] is None
    assert "quality gate refused the model: test accuracy 0.9100 is below 0.98" in run["message"]
    failed = training.run_summary(_job("Failed"), [_train_pod("p", None, exit_code=1)])
    assert failed["result"] is None and failed["message"].startswith("failed (BackoffLimitExceeded")
    assert training.run_summary(_job(None), [])["state"] == "Running"
    # Log noise is not a result.
    assert training.pod_result(_train_pod("p", "Traceback (most recent call last):")) is None


# ---------- pod reasons ----------


def _pod(**status) -> V1Pod:
    return V1Pod(metadata=V1ObjectMeta(name="p"), status=V1PodStatus(**status))


def test_pod_problem_names_the_reason():
    ready = [V1PodCondition(type="Ready", status="True")]
    assert pod_problem(_pod(phase="Running", conditions=ready)) is None
    unschedulable = [
        V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                       message="0/3 nodes are available: 3 Insufficient cpu."),
    ]  # fmt: skip
    assert pod_problem(_pod(phase="Pending", conditions=unschedulable)) == (
        "unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )
    crashing = V1ContainerStatus(
        name="gateway", image="g", image_id="", ready=False, restart_count=4,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff")),
    )  # fmt: skip
    assert pod_problem(_pod(phase="Running", container_statuses=[crashing])) == (
        "gateway: CrashLoopBackOff"
    )
    waiting_init = V1ContainerStatus(
        name="wait-for-model", image="s", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(),
    )  # fmt: skip
    assert pod_problem(_pod(phase="Pending", init_container_statuses=[waiting_init])) == (
        "init container wait-for-model running"
    )


# ---------- output, predict ----------


def test_columns_are_aligned_like_kubectl():
    text = columns(["name", "ready"], [["mnist-gateway", "2/2"], ["x", None]])
    assert text.splitlines() == [
        "NAME            READY",
        "mnist-gateway   2/2",
        "x               -",
    ]


def test_predict_reads_files_and_reports_the_gateways_error(tmp_path):
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    images = predict.read_images([str(image)])
    assert predict.request_body(images) == {"images": ["iVBORyBmYWtl"]}
    with pytest.raises(cli.CliError) as missing:
        predict.read_images([str(tmp_path / "missing.png")])
    assert missing.value.code == EXIT_USAGE and "No such file" in missing.value.message
    body = json.dumps({"error": {"code": "invalid_image", "message": "not an image"}})
    failure = predict.proxied_failure(ProxiedError("predict", 422, body.encode(), "Unprocessable"))
    assert failure.message == "the gateway answered 422: not an image" and failure.code == 1
    denied = predict.proxied_failure(ProxiedError("predict", 403, b"", 'User "x" cannot ...'))
    assert denied.code == 5 and denied.message.startswith("forbidden: ")


# ---------- the command line without a cluster ----------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    context = {"cluster": "c", "user": "u"} | ({"namespace": namespace} if namespace else {})
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "here", "context": context}],
                "current-context": "here",
            }
        )
    )
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", [["status"], ["models"], ["scale", "gateway", "2"], ["unpin"]])
def test_no_api_server_is_exit_3_in_one_line(tmp_path, capsys, command):
    kubeconfig = _kubeconfig(tmp_path / "config", f"https://127.0.0.1:{_free_port()}")
    code, out, err = _run(capsys, "--kubeconfig", str(kubeconfig), *command)
    assert code == EXIT_UNREACHABLE == 3
    assert out == ""
    assert re.fullmatch(
        r"error: cannot reach the API server at https://127\.0\.0\.1:\d+: connection refused\n", err
    ), err


def test_missing_kubeconfig_and_unknown_context_are_exit_3(tmp_path, capsys):
    code, _, err = _run(capsys, "--kubeconfig", str(tmp_path / "absent"), "status")
    assert code == 3 and err.count("\n") == 1 and err.startswith("error: cannot use kubeconfig")
    kubeconfig = _kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    code, _, err = _run(capsys, "status", "--kubeconfig", str(kubeconfig), "--context", "elsewhere")
    assert code == 3 and "elsewhere" in err and err.count("\n") == 1


def test_usage_errors_are_exit_2(capsys):
    for argv in (["scale", "cassandra", "3"], ["scale", "gateway", "-1"], ["pin", "0"], [],
                 ["logs", "gateway", "-o", "xml"], ["retrain", "--epochs", "0"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == EXIT_USAGE, argv
    capsys.readouterr()


def test_unreadable_image_fails_before_any_request(tmp_path, capsys):
    kubeconfig = _kubeconfig(tmp_path / "config", f"https://127.0.0.1:{_free_port()}")
    code, _, err = _run(
        capsys, "--kubeconfig", str(kubeconfig), "predict", str(tmp_path / "no.png")
    )
    assert code == EXIT_USAGE and err.startswith("error: cannot read ") and err.count("\n") == 1


def test_the_context_namespace_is_the_default(tmp_path):
    from mnistctl.kube import Target, connect

    kubeconfig = _kubeconfig(tmp_path / "config", "https://127.0.0.1:1", namespace="ops")
    assert connect(Target(kubeconfig=str(kubeconfig))).namespace == "ops"
    assert connect(Target(kubeconfig=str(kubeconfig), namespace="x")).namespace == "x"
    plain = _kubeconfig(tmp_path / "plain", "https://127.0.0.1:1")
    assert connect(Target(kubeconfig=str(plain))).namespace == "default"


# ---------- the documented shapes ----------


def documented_schemas() -> dict[str, dict]:
    """The JSON Schemas of docs/operations.md, by name (``<!-- schema: NAME -->``)."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    found = re.findall(r"<!-- schema: (\w+) -->\n```json\n(.*?)\n```", text, re.S)
    return {name: json.loads(body) for name, body in found}


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schemas = documented_schemas()
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)


def test_documented_schemas_are_valid_and_cover_every_json_command():
    schemas = documented_schemas()
    assert set(schemas) == {"defs", "status", "models", "scale", "retrain", "pin", "predict"}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_exit_codes_are_documented():
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    for code in EXIT_CODES:
        assert f"\n| {code} | " in text


def test_a_run_summary_matches_the_documented_shape():
    message = json.dumps({"result": "exported", "version": 2, "test_accuracy": 0.99,
                          "min_accuracy": 0.98, "epochs": 3, "arch": "compact"})  # fmt: skip
    run = training.run_summary(_job("Complete"), [_train_pod("p", message)])
    data = {"release": "mnist", "namespace": "n", "job": "j", "template": "job/x",
            "args": [], "run": run}  # fmt: skip
    schema_validator("retrain").validate(data)


# ---------- tables, from documented shapes ----------


def _status_data() -> dict:
    policy = {"type": "latest", "latest_count": 1, "versions": None, "labels": {}, "text": "latest"}
    pinned = {"type": "specific", "latest_count": None, "versions": [1], "labels": {},
              "text": "versions 1"}  # fmt: skip
    run = {"job": "mnist-retrain-1", "created_by": "mnistctl", "state": "Failed",
           "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:05:00Z",
           "result": "refused", "version": None, "test_accuracy": 0.95, "min_accuracy": 0.97,
           "epochs": 3, "arch": "compact",
           "message": "quality gate refused the model"}  # fmt: skip
    return {
        "release": "mnist",
        "namespace": "ops",
        "healthy": False,
        "components": [
            {
                "component": "gateway",
                "kind": "Deployment",
                "name": "mnist-gateway",
                "desired": 2,
                "ready": 1,
                "updated": 2,
                "healthy": False,
                "reasons": ["mnist-gateway-x: gateway: CrashLoopBackOff"],
            },
        ],
        "autoscalers": [
            {
                "component": "serving",
                "name": "mnist-serving",
                "min": 2,
                "max": 6,
                "current": 2,
                "desired": 2,
                "cpu_percent": None,
                "problems": ["ScalingActive: FailedGetResourceMetric"],
            },
        ],
        "cassandra_nodes": [
            {"pod": "mnist-cassandra-0", "status": "UN", "node": "n1", "reason": None}
        ],
        "serving": {
            "config_map": "mnist-serving-models",
            "model": "mnist",
            "policy": pinned,
            "release_policy": policy,
            "pinned": 1,
            "expected_versions": [1],
        },
        "versions": [
            {
                "version": 1,
                "test_accuracy": 0.9812,
                "arch": "compact",
                "epochs": 3,
                "job": "mnist-training-abc",
                "trained": "2026-01-01T00:00:00Z",
                "configured": True,
                "live_state": "AVAILABLE",
            },
        ],
        "training": {
            "runs": [run],
            "cronjobs": [
                {
                    "name": "mnist-retrain",
                    "schedule": "0 3 * * 0",
                    "suspended": True,
                    "last_schedule": None,
                }
            ],
        },
        "live": {
            "tf_serving": {
                "reachable": True,
                "error": None,
                "versions": [{"version": 1, "state": "AVAILABLE", "error": None}],
            },
            "gateway": {"reachable": True, "ready": True, "model_version": 1, "detail": None},
        },
    }


def test_status_table_shows_problems_pin_and_live_state():
    from mnistctl.status import models_table, status_table

    data = _status_data()
    schema_validator("status").validate(data)
    text = status_table(data)
    assert text.startswith("Release mnist in namespace ops: NOT HEALTHY\n")
    assert "  gateway: mnist-gateway-x: gateway: CrashLoopBackOff" in text
    assert "  mnist-serving: ScalingActive: FailedGetResourceMetric" in text
    assert "pinned by mnistctl to 1 (the release asks for latest)" in text
    assert "TF Serving: 1 AVAILABLE" in text and "Gateway: ready, model version 1" in text
    assert "quality gate refused the model" in text
    assert "CronJob mnist-retrain: 0 3 * * 0 (suspended)" in text
    models = {k: data[k] for k in ("release", "namespace", "serving", "versions", "live")}
    schema_validator("models").validate(models)
    assert models_table(models).splitlines()[1].split()[:3] == ["1", "0.9812", "compact"]


def test_a_feedback_regression_is_reported_with_its_reason():
    reason = "feedback holdout accuracy 0.9100 is below version 3's 0.9300"
    refused = json.dumps({"result": "refused", "test_accuracy": 0.99, "reason": reason})
    run = training.run_summary(_job("Failed"), [_train_pod("p", refused, exit_code=4)])
    assert run["message"] == (
        "quality gate refused the model: feedback holdout accuracy 0.9100 is below version "
        "3's 0.9300; nothing exported"
    )
