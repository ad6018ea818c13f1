"""The TF Serving stand-in's command line and config files, as the chart writes them.

The chart's serving flags and ConfigMaps come from the committed manifests
(k8s/manifests/mnist.yaml, rendered from the chart and checked fresh by
tests/chart/test_manifests.py); a pin is the text ``mnistctl pin`` writes. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnistctl import modelconfig
from serving_standin.cli import UsageError, check_flags, parse_flags, usage
from serving_standin.config import (
    DEFAULT_PROMETHEUS_PATH,
    ConfigError,
    ModelSpec,
    VersionPolicy,
    read_batching_parameters,
    read_model_config,
    read_monitoring_config,
)
from tests.support.paths import REPO_ROOT

MANIFESTS = REPO_ROOT / "k8s" / "manifests" / "mnist.yaml"


@pytest.fixture(scope="module")
def chart() -> dict:
    """The serving container and the ConfigMaps it reads, from the rendered chart."""
    objects = [o for o in yaml.safe_load_all(MANIFESTS.read_text()) if o]
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    deployment = by_name["Deployment", "mnist-serving"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        "container": container,
        "models": by_name["ConfigMap", "mnist-serving-models"]["data"],
        "server": by_name["ConfigMap", "mnist-serving"]["data"],
    }


def write(tmp_path: Path, text: str, name: str = "file.config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- flags -----------------------------------------------------------------------------------


def test_the_charts_command_line_parses(chart):
    assert chart["container"]["command"] == ["/usr/bin/tensorflow_model_server"]
    flags = parse_flags(chart["container"]["args"])
    check_flags(flags)
    assert (flags["port"], flags["rest_api_port"]) == (8500, 8501)
    assert flags["model_config_file"] == "/etc/serving/models/models.config"
    assert flags["model_config_file_poll_wait_seconds"] == 30
    assert flags["file_system_poll_wait_seconds"] == 10
    assert flags["monitoring_config_file"] == "/etc/serving/server/monitoring.config"
    assert flags["enable_model_warmup"] is True


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--port 8500", "unknown argument"),  # one argv word: not --name=value
        ("--port", "needs a value, as --port=VALUE"),
        ("--rest_api=8501", "unknown argument: --rest_api=8501"),  # no abbreviations
        ("--grpc_channel_arguments=a=1", "a TF Serving flag the stand-in does not implement"),
        ("--port=http", "not an integer"),
        ("--port=4294967296", "out of range"),
        ("--enable_batching=yes", "not a boolean"),
        ("models.config", "unknown argument: models.config"),
    ],
)
def test_flags_tf_serving_would_refuse_are_refused(argument, message):
    with pytest.raises(UsageError, match=message):
        parse_flags([argument])


def test_bool_flags_take_tf_servings_forms():
    assert parse_flags(["--enable_batching"])["enable_batching"] is True
    assert parse_flags(["--enable_batching=true"])["enable_batching"] is True
    assert parse_flags(["--enable_model_warmup=false"])["enable_model_warmup"] is False
    assert parse_flags(["--enable_model_warmup=0"])["enable_model_warmup"] is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rest_api_port=8501"], "--model_config_file or --model_base_path"),
        (["--model_base_path=/m"], "serves only the REST API"),
        (["--model_base_path=/m", "--rest_api_port=8500"], "cannot be same as --port"),
        (
            ["--model_base_path=/m", "--rest_api_port=8501", "--batching_parameters_file=/b"],
            "without --enable_batching",
        ),
    ],
)
def test_flag_combinations_that_cannot_serve_are_refused(arguments, message):
    with pytest.raises(UsageError, match=message):
        check_flags(parse_flags(arguments))


def test_help_says_it_is_a_stand_in_without_grpc():
    text = usage()
    assert "STAND-IN" in text
    assert "NOT tensorflow_model_server" in text
    assert "does NOT speak gRPC" in text
    assert parse_flags(["--help"])["help"] is True


# --- model config ------------------------------------------------------------------------------


def test_the_charts_model_config_is_the_newest_version(chart, tmp_path):
    (spec,) = read_model_config(write(tmp_path, chart["models"]["models.config"]))
    assert spec == ModelSpec("mnist", Path("/models/mnist"), VersionPolicy("latest", 1))
    assert spec.policy.select([1, 2, 3]) == [3]
    assert spec.policy.select([]) == []


def test_a_pin_by_mnistctl_serves_exactly_that_version(chart, tmp_path):
    pinned = modelconfig.pinned(chart["models"]["release.config"], 2)
    (spec,) = read_model_config(write(tmp_path, pinned))
    assert spec.policy == VersionPolicy("specific", versions=(2,))
    assert spec.policy.select([1, 2, 3]) == [2]
    assert spec.policy.select([1, 3]) == []


def test_policies_labels_and_several_models(tmp_path):
    text = """
    model_config_list {
      config {
        name: "mnist" base_path: "/models/mnist" model_platform: "tensorflow"
        model_version_policy { specific { versions: 4 versions: 3 } }
        version_labels { key: "stable" value: 3 }
        version_labels { key: "canary" value: 4 }
      }
      config {
        name: "all" base_path: "/models/all" model_platform: "tensorflow"
        model_version_policy { all {} }
      }
      config {
        name: "two" base_path: "/models/two" model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }
      }
      config { name: "default" base_path: "/models/default" model_type: TENSORFLOW }
    }
    """
    mnist, every, two, default = read_model_config(write(tmp_path, text))
    assert mnist.policy == VersionPolicy("specific", versions=(3, 4))
    assert mnist.labels == {"stable": 3, "canary": 4}
    assert every.policy.select([1, 5, 2]) == [1, 2, 5]
    assert two.policy.select([1, 5, 2]) == [2, 5]
    assert default.policy == VersionPolicy("latest", 1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('config { name: "a" base_path: "/m" model_platform: "tensorflow" }' * 2, "multiple times"),
        ('config { name: "a" base_path: "models/a" model_platform: "tensorflow" }', "absolute"),
        ('config { name: "a" base_path: "gs://b/a" model_platform: "tensorflow" }', "local paths"),
        ('config { name: "a" base_path: "/m" }', "neither"),
        ('config { name: "a" base_path: "/m" model_platform: "tflite" }', "unsupported platform"),
        ('config { name: "a" base_path: "/m" model_platform: "tensorflow" nam: "x" }', "nam"),
        (
            'config { name: "a" base_path: "/m" model_platform: "tensorflow" '
            "model_version_policy { specific {} } }",
            "lists no versions",
        ),
    ],
)
def test_model_configs_tf_serving_would_refuse_are_refused(tmp_path, config, message):
    path = write(tmp_path, f"model_config_list {{ {config} }}")
    with pytest.raises(ConfigError, match=message):
        read_model_config(path)


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        read_model_config(tmp_path / "missing.config")


# --- monitoring and batching ---------------------------------------------------------------------


def test_the_charts_monitoring_config_serves_metrics_at_its_path(chart, tmp_path):
    path = write(tmp_path, chart["server"]["monitoring.config"])
    assert read_monitoring_config(path) == "/monitoring/prometheus/metrics"
    assert read_monitoring_config(write(tmp_path, "prometheus_config { enable: true }")) == (
        DEFAULT_PROMETHEUS_PATH
    )
    assert read_monitoring_config(write(tmp_path, "prometheus_config { enable: false }")) is None
    with pytest.raises(ConfigError, match="Invalid protobuf file"):
        read_monitoring_config(write(tmp_path, "prometheus { enable: true }"))


def test_batching_parameters_as_the_chart_writes_them_are_read(tmp_path):
    # helm/mnist/templates/serving/configmap-server.yaml with serving.batching.enabled.
    text = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
"""
    assert read_batching_parameters(write(tmp_path, text)) == {
        "max_batch_size": 64,
        "batch_timeout_micros": 2000,
        "max_enqueued_batches": 100,
        "num_batch_threads": 2,
    }
    with pytest.raises(ConfigError, match="Invalid protobuf file"):
        read_batching_parameters(write(tmp_path, "max_batch_size: {"))
