"""TF Serving's text-protobuf configuration files, read with TF Serving's own messages.

- ``--model_config_file``: a ``ModelServerConfig`` (``tensorflow_serving.config``, shipped
  with tensorflow-serving-api), so a field TF Serving would reject is rejected here too.
  Only ``model_config_list`` is served; each model becomes a :class:`ModelSpec`.
- ``--monitoring_config_file``: a ``MonitoringConfig``; ``--batching_parameters_file``: a
  ``BatchingParameters``. Neither message ships in a Python package, so both are declared
  here with TF Serving's field names and numbers (monitoring_config.proto,
  session_bundle_config.proto) in a private descriptor pool.

No TensorFlow here: parsing a configuration must not wait for TensorFlow to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

TENSORFLOW_PLATFORM = "tensorflow"
# PrometheusExporter::kPrometheusPath: where metrics are served when the config names none.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(ValueError):
    """A configuration TF Serving would refuse, with the reason it would give."""


@dataclass(frozen=True)
class VersionPolicy:
    """``model_version_policy``: which of the versions on disk to serve."""

    kind: str = "latest"  # "latest", "specific" or "all"
    num_versions: int = 1  # latest
    versions: tuple[int, ...] = ()  # specific

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions to serve among ``on_disk`` (ascending)."""
        on_disk = sorted(set(on_disk))
        if self.kind == "latest":
            return on_disk[-self.num_versions :] if on_disk else []
        if self.kind == "specific":
            return [v for v in on_disk if v in self.versions]
        return on_disk

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest {{ num_versions: {self.num_versions} }}"
        if self.kind == "specific":
            return "specific {" + "".join(f" versions: {v}" for v in self.versions) + " }"
        return "all {}"


@dataclass(frozen=True)
class ModelSpec:
    """One ``config`` entry of ``model_config_list``."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        labels = f", labels {self.labels}" if self.labels else ""
        return f"{self.name}: base path {self.base_path}, version policy {self.policy}{labels}"


def single_model(name: str, base_path: Path | str) -> list[ModelSpec]:
    """What ``--model_name``/``--model_base_path`` stand for (BuildSingleModelConfig)."""
    return model_specs(
        model_server_config_pb2.ModelServerConfig(
            model_config_list=model_server_config_pb2.ModelConfigList(
                config=[
                    model_server_config_pb2.ModelConfig(
                        name=name, base_path=str(base_path), model_platform=TENSORFLOW_PLATFORM
                    )
                ]
            )
        )
    )


def read_model_config(path: Path | str) -> list[ModelSpec]:
    """The models of the ``ModelServerConfig`` in text format at ``path``."""
    return model_specs(_parse_file(path, model_server_config_pb2.ModelServerConfig()))


def model_specs(config: Any) -> list[ModelSpec]:
    """Validate a ``ModelServerConfig`` as ServerCore does and turn it into ModelSpecs."""
    choice = config.WhichOneof("config")
    if choice is None:
        # TF Serving takes no action for an empty config.
        return []
    if choice != "model_config_list":
        raise ConfigError(f"{choice}: the stand-in serves only a model_config_list")
    specs: list[ModelSpec] = []
    for model in config.model_config_list.config:
        if any(spec.name == model.name for spec in specs):
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        if "://" in model.base_path:
            raise ConfigError(
                f"model {model.name}: base_path {model.base_path} is a URI; "
                "the stand-in reads local paths only"
            )
        if not Path(model.base_path).is_absolute():
            raise ConfigError(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
        _check_platform(model)
        if model.HasField("logging_config"):
            raise ConfigError(f"model {model.name}: the stand-in does not log requests")
        specs.append(
            ModelSpec(
                name=model.name,
                base_path=Path(model.base_path),
                policy=_policy(model.model_version_policy),
                labels=dict(model.version_labels),
            )
        )
    return specs


def _check_platform(model: Any) -> None:
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise ConfigError(
                "Illegal setting both ModelServerConfig::model_type (deprecated) "
                "and ModelServerConfig::model_platform."
            )
        platform = (
            TENSORFLOW_PLATFORM if model.model_type == model_server_config_pb2.TENSORFLOW else ""
        )
        if not platform:
            raise ConfigError(
                f"ModelServerConfig::model_type choice {model.model_type} not supported."
            )
    else:
        platform = model.model_platform
    if not platform:
        raise ConfigError(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) "
            "nor ModelServerConfig::model_platform."
        )
    if platform != TENSORFLOW_PLATFORM:
        raise ConfigError(f"Model {model.name} requests unsupported platform {platform}")


def _policy(policy: Any) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    if choice == "specific":
        if not policy.specific.versions:
            raise ConfigError("model_version_policy specific {} lists no versions")
        return VersionPolicy("specific", versions=tuple(sorted(set(policy.specific.versions))))
    if choice == "all":
        return VersionPolicy("all")
    # Unset or latest: TF Serving's default, the newest version; num_versions 0 means 1.
    count = policy.latest.num_versions if choice == "latest" else 1
    return VersionPolicy("latest", num_versions=max(1, count))


# --- monitoring and batching -------------------------------------------------------------


def _declare_messages() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FieldDescriptorProto
    optional, repeated = proto.LABEL_OPTIONAL, proto.LABEL_REPEATED

    def fields(*specs: tuple[str, int, int, str, int]) -> list[descriptor_pb2.FieldDescriptorProto]:
        return [
            proto(name=name, number=number, type=kind, label=label, type_name=type_name or None)
            for name, number, kind, type_name, label in specs
        ]

    int64_value = (proto.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    messages = descriptor_pb2.FileDescriptorProto(
        name="serving_standin/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
        message_type=[
            descriptor_pb2.DescriptorProto(
                name="PrometheusConfig",
                field=fields(
                    ("enable", 1, proto.TYPE_BOOL, "", optional),
                    ("path", 2, proto.TYPE_STRING, "", optional),
                ),
            ),
            descriptor_pb2.DescriptorProto(
                name="MonitoringConfig",
                field=fields(
                    (
                        "prometheus_config",
                        1,
                        proto.TYPE_MESSAGE,
                        ".tensorflow.serving.PrometheusConfig",
                        optional,
                    )
                ),
            ),
            descriptor_pb2.DescriptorProto(
                name="BatchingParameters",
                field=fields(
                    ("max_batch_size", 1, *int64_value, optional),
                    ("batch_timeout_micros", 2, *int64_value, optional),
                    ("max_enqueued_batches", 3, *int64_value, optional),
                    ("num_batch_threads", 4, *int64_value, optional),
                    (
                        "thread_pool_name",
                        5,
                        proto.TYPE_MESSAGE,
                        ".google.protobuf.StringValue",
                        optional,
                    ),
                    ("allowed_batch_sizes", 6, proto.TYPE_INT64, "", repeated),
                    ("pad_variable_length_inputs", 7, proto.TYPE_BOOL, "", optional),
                ),
            ),
        ],
    )
    pool.Add(messages)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("MonitoringConfig", "BatchingParameters")
    }


_MESSAGES = _declare_messages()


def read_monitoring_config(path: Path | str) -> str | None:
    """The path Prometheus metrics are served at, or None when they are not enabled."""
    config = _parse_file(path, _MESSAGES["MonitoringConfig"]())
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_PROMETHEUS_PATH


def read_batching_parameters(path: Path | str) -> dict[str, Any]:
    """The parameters set in a ``BatchingParameters`` file, by field name. Fields newer
    than the ones declared above are skipped: the stand-in does not batch, so it only
    checks that the file is one TF Serving could read."""
    parameters = _parse_file(path, _MESSAGES["BatchingParameters"](), allow_unknown_field=True)
    return {
        descriptor.name: getattr(value, "value", value)
        for descriptor, value in parameters.ListFields()
    }


def _parse_file(path: Path | str, message: Any, *, allow_unknown_field: bool = False) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    try:
        return text_format.Parse(text, message, allow_unknown_field=allow_unknown_field)
    except text_format.ParseError as error:
        raise ConfigError(f"Invalid protobuf file: '{path}': {error}") from None
