"""The stand-in's server: TF Serving's REST API over real SavedModels, loaded with TensorFlow.

Implements the documented REST API (tensorflow_serving/g3doc/api_rest.md) for the models
of a model config list:

- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``           model status
- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``  signature metadata
- ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``   row ("instances") or
  columnar ("inputs") requests
- ``GET  <prometheus path>`` when a monitoring config enables it (:mod:`.metrics`)

Errors are ``{"error": "..."}`` with TF Serving's codes and messages (404 unknown model or
version, 400 malformed request or unknown label).

Versions, as TF Serving's file-system source and availability-preserving policy manage
them: every ``poll_seconds`` each model's base path is listed, its version policy picks the
versions to serve (:class:`~serving_standin.config.VersionPolicy`), new ones are loaded
(SavedModel, then the warm-up records of ``assets.extra/`` replayed) and only then are the
versions the policy dropped unloaded. A version that fails to load is reported in state END
with its error and not tried again; a version it was to replace keeps serving. Unloaded
versions stay listed in state END, as TF Serving lists them.
:meth:`TFServingStandIn.set_models` applies a new model config list (what TF Serving does
when it re-reads ``--model_config_file``).

Fault injection for tests: :meth:`fail_next_predictions`, :meth:`delay_predictions`,
and :meth:`stop` / :meth:`start` to take the ports down and bring them back.
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mnist_contract import available_versions
from serving_standin import metrics
from serving_standin.config import ConfigError, ModelSpec, single_model

_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict)?$"
)
log = logging.getLogger(__name__)
_DTYPE_NAMES = {tf.float32: "DT_FLOAT", tf.float64: "DT_DOUBLE", tf.int64: "DT_INT64"}
# TF Serving's warm-up file inside a version directory, and its limit on records.
WARMUP_FILE = Path("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@dataclass(frozen=True)
class ServerOptions:
    """What ``tensorflow_model_server``'s flags set beyond the models and the REST port."""

    host: str = "127.0.0.1"
    # --port: listened on and accepted, nothing more (the stand-in does not speak gRPC).
    grpc_port: int | None = None
    # From --monitoring_config_file: where Prometheus metrics are served, if anywhere.
    monitoring_path: str | None = None
    warmup: bool = True
    warmup_iterations: int = 1
    saved_model_tags: tuple[str, ...] = ("serve",)
    allow_labels_for_unavailable: bool = False
    # Keep loaded models out of the garbage collector's full collections (a server
    # process; never in a test process).
    freeze_gc: bool = False


@dataclass(frozen=True)
class VersionState:
    state: str  # LOADING, AVAILABLE or END, as TF Serving's GetModelStatus reports them
    error: str = ""


class _Model:
    """One configured model. ``served`` and ``states`` are replaced, never mutated, so a
    request reads a consistent snapshot without a lock."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.served: dict[int, Any] = {}
        self.states: dict[int, VersionState] = {}
        self.failed: set[int] = set()
        self.labels: dict[str, int] = {}
        self.reported_empty = False

    def set_state(self, version: int, state: str, error: str = "") -> None:
        self.states = {**self.states, version: VersionState(state, error)}


class _ListenOnly:
    """Accepts TCP connections on ``port`` and closes them: enough for a tcpSocket probe
    (the chart's liveness probe on the gRPC port); no gRPC is spoken."""

    def __init__(self, host: str, port: int) -> None:
        self._socket = socket.create_server((host, port), backlog=64)
        self._socket.settimeout(0.5)
        self.port = self._socket.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="grpc-port")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._socket.close()


class TFServingStandIn:
    """Serves model ``model_name`` from ``model_base_path`` (newest version), or the
    ``models`` of a model config list, on ``options.host``:``port`` (0: a free port)."""

    def __init__(
        self,
        model_base_path: Path | None = None,
        *,
        model_name: str = "mnist",
        models: Sequence[ModelSpec] | None = None,
        port: int = 0,
        poll_seconds: float = 1.0,
        options: ServerOptions | None = None,
    ) -> None:
        if (model_base_path is None) == (models is None):
            raise ValueError("give either model_base_path or models")
        if models is None:
            models = single_model(model_name, Path(model_base_path).absolute())
        self.model_name = models[0].name if models else model_name
        self.port = port
        self.options = options or ServerOptions()
        self.metrics = metrics.Metrics()
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._reconcile_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._check_labels(models)
        self._models = {spec.name: _Model(spec) for spec in models}
        self._failures: collections.deque[tuple[int, str]] = collections.deque()
        self._delay_seconds = 0.0
        self.requests_received: collections.Counter[str] = collections.Counter()
        self._server: BaseWSGIServer | None = None
        self._grpc: _ListenOnly | None = None
        self._threads: list[threading.Thread] = []
        self._stop_polling = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TFServingStandIn:
        """Load what the policies ask for, then listen (again on the same ports after a
        stop). Like TF Serving, the ports open only after this first load."""
        self._reconcile_all()
        self._server = make_server(
            self.options.host, self.port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.port
        if self.options.grpc_port is not None:
            self._grpc = _ListenOnly(self.options.host, self.options.grpc_port)
        self._stop_polling.clear()
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True)]
        if self._poll_seconds > 0:
            self._threads.append(threading.Thread(target=self._poll, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Close the listening sockets: clients now get connection refused."""
        self._stop_polling.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> TFServingStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- fault injection -------------------------------------------------------------------

    def fail_next_predictions(
        self, count: int, status: int = 503, message: str = "injected failure"
    ) -> None:
        with self._lock:
            self._failures.extend([(status, message)] * count)

    def delay_predictions(self, seconds: float) -> None:
        self._delay_seconds = seconds

    # --- versions ----------------------------------------------------------------------------

    @property
    def served_versions(self) -> list[int]:
        """The loaded versions of the (first) model."""
        model = self._models.get(self.model_name)
        return sorted(model.served) if model else []

    def version_states(self, name: str | None = None) -> dict[int, str]:
        model = self._models.get(name or self.model_name)
        return {v: s.state for v, s in model.states.items()} if model else {}

    def set_models(self, models: Sequence[ModelSpec]) -> None:
        """Serve this model config list from now on: new models are added, missing ones
        dropped, policies and labels replaced, versions loaded and unloaded at once.
        Raises ConfigError (and changes nothing) where TF Serving refuses the config."""
        with self._reconcile_lock:
            self._check_labels(models)
            current = self._models
            updated: dict[str, _Model] = {}
            for spec in models:
                model = current.get(spec.name)
                if model is None or model.spec.base_path != spec.base_path:
                    model = _Model(spec)
                model.spec = spec
                updated[spec.name] = model
            self._models = updated
            for name in current.keys() - updated.keys():
                log.info("Model %s is no longer in the config: its versions are unloaded", name)
        self._reconcile_all()

    def _check_labels(self, models: Sequence[ModelSpec]) -> None:
        """TF Serving's rule (ServerCore::UpdateModelVersionLabelMap): a label may name only
        an AVAILABLE version, unless labels for unavailable versions are allowed, and even
        then a label may not move to another version that is not AVAILABLE."""
        for spec in models:
            model = self._models.get(spec.name)
            for label, version in spec.labels.items():
                available = model is not None and version in model.served
                if available:
                    continue
                if self.options.allow_labels_for_unavailable and (
                    model is None or model.labels.get(label, version) == version
                ):
                    continue
                raise ConfigError(
                    f"Request to assign label to version {version} of model {spec.name}, "
                    "which is not currently available for inference"
                )

    def _poll(self) -> None:
        while not self._stop_polling.wait(self._poll_seconds):
            self._reconcile_all()

    def _reconcile_all(self) -> None:
        with self._reconcile_lock:
            changed = False
            for model in self._models.values():
                changed |= self._reconcile(model)
                model.labels = dict(model.spec.labels)
            if changed and self.options.freeze_gc:
                # Unloaded versions become collectable; the loaded ones are frozen again.
                gc.unfreeze()
                gc.collect()
                gc.freeze()

    def _reconcile(self, model: _Model) -> bool:
        spec = model.spec
        on_disk = available_versions(spec.base_path)
        if not on_disk and not model.reported_empty:
            log.warning(
                "No versions of servable %s found under base path %s", spec.name, spec.base_path
            )
        model.reported_empty = not on_disk
        # The aspired versions, as TF Serving's file-system source names them: a version
        # that failed to load stays aspired (and is not tried again).
        wanted = spec.policy.select(on_disk)
        changed = False
        for version in reversed(wanted):  # the newest first: it is the one requests use
            if version not in model.served and version not in model.failed:
                changed = True
                self._load(model, version)
        # TF Serving's AvailabilityPreservingPolicy: versions no longer aspired are unloaded
        # once an aspired one is AVAILABLE, or when none is aspired; until then only the
        # newest of them keeps serving.
        stale = sorted(v for v in model.served if v not in wanted)
        aspired_available = any(v in model.served for v in wanted)
        unload = stale if aspired_available or not wanted else stale[:-1]
        if unload:
            changed = True
            model.served = {v: m for v, m in model.served.items() if v not in unload}
            for version in unload:
                model.set_state(version, "END")
                log.info("Unloaded servable version {name: %s version: %d}", spec.name, version)
        return changed

    def _load(self, model: _Model, version: int) -> None:
        spec = model.spec
        path = spec.base_path / str(version)
        servable = (spec.name, version)
        model.set_state(version, "LOADING")
        log.info("Loading servable version {name: %s version: %d}", *servable)
        try:
            loaded = tf.saved_model.load(str(path), tags=list(self.options.saved_model_tags))
            if self.options.warmup:
                records = replay_warmup(loaded, path, self.options.warmup_iterations)
                if records:
                    log.info(
                        "Finished reading warmup data for model at %s. Number of warmup "
                        "records read: %d.",
                        path / WARMUP_FILE,
                        records,
                    )
        except Exception as error:
            # TF Serving logs a version that fails to load and keeps serving the others.
            log.exception("Failed to load servable version {name: %s version: %d}", *servable)
            model.failed.add(version)
            model.set_state(version, "END", f"{type(error).__name__}: {error}"[:1000])
            self.metrics.version_load(spec.name, ok=False)
            return
        model.served = {**model.served, version: loaded}
        model.set_state(version, "AVAILABLE")
        self.metrics.version_load(spec.name, ok=True)
        log.info("Successfully loaded servable version {name: %s version: %d}", *servable)

    def _servable(self, name: str, version: int | None, label: str | None) -> tuple[int, Any]:
        model = self._models.get(name)
        served = model.served if model is not None else {}
        if label is not None:
            labels = model.labels if model is not None else {}
            if label not in labels:
                raise _HttpError(400, f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is None and served:
            newest = max(served)
            return newest, served[newest]
        if version is not None and version in served:
            return version, served[version]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise _HttpError(404, f"Servable not found for request: {request}")

    # --- HTTP ------------------------------------------------------------------------------

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        monitoring = self.options.monitoring_path
        if monitoring is not None and request.path == monitoring and request.method == "GET":
            available = {n: len(m.served) for n, m in self._models.items()}
            return Response(self.metrics.render(available), content_type=metrics.CONTENT_TYPE)
        try:
            body = self._route(request)
            status = 200
        except _HttpError as error:
            body, status = {"error": error.message}, error.status
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _route(self, request: Request) -> dict[str, Any]:
        match = _MODEL_PATH.match(request.path)
        if match is None:
            raise _HttpError(404, f"Malformed request: {request.method} {request.path}")
        name, verb, label = match["name"], match["verb"], match["label"]
        version = int(match["version"]) if match["version"] else None
        if verb == ":predict" and request.method == "POST":
            self._count("predict")
            started = time.perf_counter()
            status = 200
            try:
                self._apply_faults()
                return self._predict(name, version, label, request.get_data())
            except _HttpError as error:
                status = error.status
                raise
            finally:
                self.metrics.predict_request(name, status, time.perf_counter() - started)
        if verb == "/metadata" and request.method == "GET":
            self._count("metadata")
            return self._metadata(name, version, label)
        if verb is None and request.method == "GET":
            self._count("status")
            return self._status(name, version, label)
        raise _HttpError(404, f"Malformed request: {request.method} {request.path}")

    def _count(self, kind: str) -> None:
        with self._lock:
            self.requests_received[kind] += 1

    def _apply_faults(self) -> None:
        if self._delay_seconds:
            threading.Event().wait(self._delay_seconds)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            raise _HttpError(*failure)

    # --- API ---------------------------------------------------------------------------------

    def _status(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        model = self._models.get(name)
        states = dict(model.states) if model is not None else {}
        if label is not None:
            version, _ = self._servable(name, None, label)
        if version is not None:
            if version not in states:
                raise _HttpError(404, f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        if not states:
            raise _HttpError(404, f"Could not find any versions of model {name}")
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": states[v].state,
                    "status": {
                        "error_code": "UNKNOWN" if states[v].error else "OK",
                        "error_message": states[v].error,
                    },
                }
                for v in sorted(states, reverse=True)
            ]
        }

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        version, model = self._servable(name, version, label)
        signature_defs = {
            key: _signature_def(signature) for key, signature in model.signatures.items()
        }
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}},
        }

    def _predict(
        self, name: str, version: int | None, label: str | None, raw: bytes
    ) -> dict[str, Any]:
        _, model = self._servable(name, version, label)
        try:
            payload = json.loads(raw)
        except ValueError as error:
            raise _HttpError(400, f"JSON Parse error: {error}") from None
        if not isinstance(payload, dict):
            raise _HttpError(400, "JSON Value: request body is not an object")
        signature_name = payload.get("signature_name", "serving_default")
        if signature_name not in model.signatures:
            raise _HttpError(400, f'Serving signature name: "{signature_name}" not found')
        signature = model.signatures[signature_name]
        specs: dict[str, tf.TensorSpec] = signature.structured_input_signature[1]
        if ("instances" in payload) == ("inputs" in payload):
            raise _HttpError(400, "Missing 'inputs' or 'instances' key (exactly one is required)")
        row_format = "instances" in payload
        values = (
            _rows_to_columns(payload["instances"], specs)
            if row_format
            else _named_columns(payload["inputs"], specs)
        )
        tensors = {name: _to_tensor(name, values[name], spec) for name, spec in specs.items()}
        outputs = {key: value.numpy() for key, value in signature(**tensors).items()}
        return _format_outputs(outputs, row_format)


def replay_warmup(loaded: Any, version_dir: Path, iterations: int = 1) -> int:
    """Run the version's warm-up requests (TFRecord PredictionLogs, as TF Serving reads
    them) through its signatures; the number of records. Raises on a record that does not
    run, which fails the load as it does in TF Serving."""
    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in tf.data.TFRecordDataset(str(path)):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warmup records")
        record = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        kind = record.WhichOneof("log_type")
        if kind != "predict_log":
            raise ValueError(f"{path}: record {count} is a {kind}; the stand-in replays predict")
        request = record.predict_log.request
        signature_name = request.model_spec.signature_name or "serving_default"
        if signature_name not in loaded.signatures:
            raise ValueError(f'{path}: record {count}: signature "{signature_name}" not found')
        inputs = {key: tf.constant(tf.make_ndarray(t)) for key, t in request.inputs.items()}
        for _ in range(iterations):
            loaded.signatures[signature_name](**inputs)
    return count


def _named_columns(inputs: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, Any]:
    if isinstance(inputs, dict):
        missing = set(specs) - set(inputs)
        if missing:
            raise _HttpError(400, f"Missing input tensors: {sorted(missing)}")
        return inputs
    if len(specs) != 1:
        raise _HttpError(400, "Unnamed 'inputs' needs a signature with exactly one input")
    return {next(iter(specs)): inputs}


def _rows_to_columns(instances: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise _HttpError(400, "'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        try:
            return {name: [row[name] for row in instances] for name in specs}
        except KeyError as error:
            raise _HttpError(400, f"Instance is missing input {error}") from None
    if len(specs) != 1:
        raise _HttpError(400, "Unnamed instances need a signature with exactly one input")
    return {next(iter(specs)): instances}


def _to_tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    try:
        array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError) as error:
        raise _HttpError(400, f"Input {name!r} is not a dense {spec.dtype.name} tensor") from error
    if not spec.shape.is_compatible_with(array.shape):
        raise _HttpError(
            400, f"Input {name!r} has shape {list(array.shape)}, signature wants {spec.shape}"
        )
    return tf.constant(array)


def _format_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    if row_format:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        rows = len(next(iter(outputs.values())))
        return {
            "predictions": [
                {key: value[i].tolist() for key, value in outputs.items()} for i in range(rows)
            ]
        }
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {key: value.tolist() for key, value in outputs.items()}}


def _tensor_info(spec: tf.TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _DTYPE_NAMES.get(spec.dtype, f"DT_{spec.dtype.name.upper()}"),
        "tensor_shape": {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name or "",
    }


def _signature_def(signature: Any) -> dict[str, Any]:
    return {
        "inputs": {k: _tensor_info(s) for k, s in signature.structured_input_signature[1].items()},
        "outputs": {k: _tensor_info(s) for k, s in signature.structured_outputs.items()},
        "method_name": "tensorflow/serving/predict",
    }
