"""A TEST DOUBLE of TensorFlow Serving's REST API, serving a real SavedModel.

Production runs the official ``tensorflow/serving`` image; no package registry ships the
``tensorflow_model_server`` binary, so tests and local benchmarks use this stand-in. It
implements the documented REST API (tensorflow_serving/g3doc/api_rest.md) for one model:

- ``GET  /v1/models/{name}[/versions/{v}]``           model status
- ``GET  /v1/models/{name}[/versions/{v}]/metadata``  signature metadata
- ``POST /v1/models/{name}[/versions/{v}]:predict``   row ("instances") or columnar ("inputs")

Errors are ``{"error": "..."}`` with TF Serving's codes (404 unknown model or version,
400 malformed request). Like TF Serving's default version policy it serves the highest
numbered version under the model base path and polls for newer ones.

Fault injection for tests: :meth:`fail_next_predictions`, :meth:`delay_predictions`,
and :meth:`stop` / :meth:`start` to take the port down and bring it back.

Manual runs and benchmarks::

    python -m tests.doubles.tf_serving --model-base-path MODEL_DIR --port 8501
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from mnist_contract import available_versions

_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>/metadata|:predict)?$"
)
log = logging.getLogger(__name__)
_DTYPE_NAMES = {tf.float32: "DT_FLOAT", tf.float64: "DT_DOUBLE", tf.int64: "DT_INT64"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class TFServingDouble:
    """Serves ``model_base_path`` as model ``model_name`` on 127.0.0.1 (a test double)."""

    def __init__(
        self,
        model_base_path: Path,
        *,
        model_name: str = "mnist",
        port: int = 0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.model_name = model_name
        self.port = port
        self._base_path = Path(model_base_path)
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._served: dict[int, Any] = {}
        self._unloadable: set[int] = set()
        self._failures: collections.deque[tuple[int, str]] = collections.deque()
        self._delay_seconds = 0.0
        self.requests_received: collections.Counter[str] = collections.Counter()
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop_polling = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TFServingDouble:
        """Load the newest version, listen (again on the same port after a stop)."""
        self._load_newest()
        self._server = make_server(
            "127.0.0.1", self.port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.port
        self._stop_polling.clear()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: clients now get connection refused."""
        self._stop_polling.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> TFServingDouble:
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

    @property
    def served_versions(self) -> list[int]:
        return sorted(self._served)

    # --- versions ----------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop_polling.wait(self._poll_seconds):
            self._load_newest()

    def _load_newest(self) -> None:
        versions = [v for v in available_versions(self._base_path) if v not in self._unloadable]
        if not versions or versions[-1] in self._served:
            return
        newest = versions[-1]
        try:
            loaded = tf.saved_model.load(str(self._base_path / str(newest)))
        except Exception:
            # TF Serving logs a version that fails to load and keeps serving the old one.
            log.exception("version %s of %s failed to load", newest, self.model_name)
            self._unloadable.add(newest)
            return
        # Load first, then unload the old one: TF Serving's availability-preserving policy.
        self._served = {newest: loaded}

    def _servable(self, name: str, version: int | None) -> tuple[int, Any]:
        served = self._served
        if name == self.model_name and version is None and served:
            newest = max(served)
            return newest, served[newest]
        if name == self.model_name and version in served:
            return version, served[version]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise _HttpError(404, f"Servable not found for request: {request}")

    # --- HTTP ------------------------------------------------------------------------------

    @Request.application
    def _wsgi(self, request: Request) -> Response:
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
        name, verb = match["name"], match["verb"]
        version = int(match["version"]) if match["version"] else None
        if verb == ":predict" and request.method == "POST":
            self._count("predict")
            self._apply_faults()
            return self._predict(name, version, request.get_data())
        if verb == "/metadata" and request.method == "GET":
            self._count("metadata")
            return self._metadata(name, version)
        if verb is None and request.method == "GET":
            self._count("status")
            return self._status(name, version)
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

    def _status(self, name: str, version: int | None) -> dict[str, Any]:
        served = sorted(self._served) if name == self.model_name else []
        if version is not None:
            if version not in served:
                raise _HttpError(404, f"Could not find version {version} of model {name}")
            served = [version]
        if not served:
            raise _HttpError(404, f"Could not find any versions of model {name}")
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in served
            ]
        }

    def _metadata(self, name: str, version: int | None) -> dict[str, Any]:
        version, model = self._servable(name, version)
        signature_defs = {
            key: _signature_def(signature) for key, signature in model.signatures.items()
        }
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}},
        }

    def _predict(self, name: str, version: int | None, raw: bytes) -> dict[str, Any]:
        _, model = self._servable(name, version)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, required=True)
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    double = TFServingDouble(
        args.model_base_path,
        model_name=args.model_name,
        port=args.port,
        poll_seconds=args.poll_seconds,
    )
    with double:
        # Move TensorFlow's many long-lived objects out of the collector's sight: otherwise
        # parsing a large JSON body triggers full collections that scan them all (measured:
        # json.loads of a 64-image request spiking from ~20 ms to ~200 ms).
        gc.freeze()
        print(f"TF Serving test double: {double.url}/v1/models/{args.model_name}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
