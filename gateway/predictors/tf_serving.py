"""The TF Serving predictor: a REST client for ``tensorflow_model_server``.

No TensorFlow here (the gateway image does not ship it): plain JSON over a pooled
``requests.Session``. The request body is written by orjson straight from the float32
array, each pixel in its shortest exact form: ``json.dumps`` of the same batch as Python
floats spends about ten times the CPU, on the worker's event loop (38 ms for 64 images).

Request format: the columnar ``{"inputs": {"image": [...]}}`` rather than row-wise
``"instances"``: the answer comes back as whole output tensors
(``{"outputs": {"probabilities": [[...]], "digit": [...]}}``), which become two NumPy
arrays in one step each, exactly what the in-process predictor gets from TensorFlow.

Which version answered: TF Serving's REST predict response does not say. So the client
resolves the served version first (``GET /v1/models/{name}``: the highest AVAILABLE one,
cached for ``version_refresh_seconds``) and sends the prediction to that explicit
version. The recorded version is then the one that computed the result, even while TF
Serving swaps versions; if the version was unloaded meanwhile (404), the client looks
again once.

Failures: connection errors, timeouts and HTTP 429/502/503/504 are retried with
exponential backoff and full jitter, within one deadline per call (predict is
idempotent, so retrying after a read timeout is safe). Everything else is answered at
once: 400 means the gateway built a request the model rejects (PredictorFailed, 502);
404 means the model or version is not loaded (PredictorUnavailable, 503). No state
survives a failure, so the client recovers as soon as TF Serving does.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import requests
from requests.adapters import HTTPAdapter

from gateway import errors
from gateway.concurrency.background import reset_in_forked_child
from gateway.predictors.base import ModelStatus, Prediction, predictions_from_outputs
from mnist_contract import (
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE_NAME,
)

if TYPE_CHECKING:
    from gateway.config import Config

TRANSIENT_STATUS_CODES = frozenset({429, 502, 503, 504})
TRANSIENT_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
# Predictions reach TF Serving through the batcher's one collector; the rest is health
# checks and metadata. More concurrent callers than this wait for a free connection.
CONNECTION_POOL_SIZE = 16
# In a cluster a connection is made in milliseconds or not at all (the pod is gone):
# give up on connecting early and leave the rest of the deadline for a retry.
CONNECT_TIMEOUT_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
# The serving contract's input, as TF Serving's metadata describes it.
EXPECTED_INPUT_DTYPE = "DT_FLOAT"
EXPECTED_INPUT_DIMS = [-1, *IMAGE_SHAPE]


class _Deadline:
    """The time left for one call, including its retries."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def timeout(self) -> tuple[float, float]:
        remaining = max(self.remaining(), 0.001)
        return min(CONNECT_TIMEOUT_SECONDS, remaining), remaining

    def backoff(self, retry: int) -> bool:
        """Sleep before retry number ``retry`` (0-based); False if the deadline forbids it."""
        delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**retry))
        if delay >= self.remaining():
            return False
        time.sleep(delay)
        return True


def _error_message(response: requests.Response) -> str:
    """TF Serving's ``{"error": "..."}`` text, or the start of whatever body came back."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason


class TFServingPredictor:
    """Predicts with the model ``model_name`` served by TF Serving at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str,
        model_version: int | None = None,
        timeout_seconds: float,
        retries: int,
        version_refresh_seconds: float,
    ) -> None:
        self.model_name = model_name
        self._model_url = f"{base_url.rstrip('/')}/v1/models/{model_name}"
        self._pinned_version = model_version
        self._timeout_seconds = timeout_seconds
        self._attempts = 1 + retries
        self._version_refresh_seconds = version_refresh_seconds
        # The version TF Serving served when last asked, and when that was.
        self._served_version: tuple[int | None, float] = (None, float("-inf"))
        # Per version: None if its signature matches the contract, else what is wrong.
        self._signature_problems: dict[int, str | None] = {}
        self._new_session()
        reset_in_forked_child(self._new_session)

    @classmethod
    def from_config(cls, config: Config) -> TFServingPredictor:
        if not config.serving_url:
            raise ValueError("SERVING_URL is not set")
        return cls(
            config.serving_url,
            model_name=config.model_name,
            model_version=config.model_version,
            timeout_seconds=config.serving_timeout_seconds,
            retries=config.serving_retries,
            version_refresh_seconds=config.model_poll_seconds,
        )

    def _new_session(self) -> None:
        # A forked child must not share the parent's sockets.
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=CONNECTION_POOL_SIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    # --- Predictor -----------------------------------------------------------------------

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        deadline = _Deadline(self._timeout_seconds)
        body = predict_request_body(batch)
        version = self._pinned_version or self._latest_version(deadline)
        response = self._send("POST", self._predict_url(version), body, deadline, self._attempts)
        if response.status_code == 404 and self._pinned_version is None:
            # Most likely TF Serving unloaded the version we knew for a newer one.
            version = self._ask_served_version(deadline, self._attempts)
            response = self._send(
                "POST", self._predict_url(version), body, deadline, self._attempts
            )
        self._raise_for_error(response, f"version {version}")
        return self._parse_outputs(response, version)

    def status(self) -> ModelStatus:
        # One attempt: a readiness probe asks again soon, and must answer in time.
        deadline = _Deadline(self._timeout_seconds)
        try:
            version = self._ask_served_version(deadline, attempts=1)
            problem = self._signature_problem(version, deadline)
        except errors.GatewayError as error:
            return ModelStatus(False, self.model_name, None, error.message)
        if problem is not None:
            return ModelStatus(False, self.model_name, str(version), problem)
        return ModelStatus(
            True, self.model_name, str(version), f"version {version} AVAILABLE in TF Serving"
        )

    def close(self) -> None:
        self._session.close()

    # --- versions ------------------------------------------------------------------------

    def _predict_url(self, version: int) -> str:
        return f"{self._model_url}/versions/{version}:predict"

    def _latest_version(self, deadline: _Deadline) -> int:
        """The highest AVAILABLE version, as last seen if that was recent enough."""
        version, checked_at = self._served_version
        if version is not None and time.monotonic() - checked_at <= self._version_refresh_seconds:
            return version
        return self._ask_served_version(deadline, self._attempts)

    def _ask_served_version(self, deadline: _Deadline, attempts: int) -> int:
        """Ask TF Serving which version to use now, and remember the answer."""
        version = self._fetch_available_version(deadline, attempts)
        self._served_version = (version, time.monotonic())  # one atomic assignment
        return version

    def _fetch_available_version(self, deadline: _Deadline, attempts: int) -> int:
        url = self._model_url
        if self._pinned_version is not None:
            url += f"/versions/{self._pinned_version}"
        response = self._send("GET", url, None, deadline, attempts)
        self._raise_for_error(response, "model status")
        try:
            states = {
                int(entry["version"]): entry["state"]
                for entry in response.json()["model_version_status"]
            }
        except (ValueError, KeyError, TypeError) as error:
            raise errors.PredictorFailed(
                f"TF Serving, model {self.model_name!r}: unexpected status response ({error!r})"
            ) from error
        available = [version for version, state in states.items() if state == "AVAILABLE"]
        if not available:
            wanted = "" if self._pinned_version is None else f" {self._pinned_version}"
            raise errors.PredictorUnavailable(
                f"TF Serving has no AVAILABLE version{wanted} of model {self.model_name!r} "
                f"(states: {states or 'none'})"
            )
        return max(available)

    def _signature_problem(self, version: int, deadline: _Deadline) -> str | None:
        """What keeps ``version``'s signature from matching the contract (checked once)."""
        if version not in self._signature_problems:
            url = f"{self._model_url}/versions/{version}/metadata"
            response = self._send("GET", url, None, deadline, 1)
            self._raise_for_error(response, "model metadata")
            self._signature_problems[version] = _contract_mismatch(response.json(), version)
        return self._signature_problems[version]

    # --- HTTP ----------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, body: bytes | None, deadline: _Deadline, attempts: int
    ) -> requests.Response:
        """The first non-transient response; PredictorUnavailable once retries run out."""
        headers = {"Content-Type": "application/json"} if body is not None else None
        for retry in range(attempts):
            try:
                response = self._session.request(
                    method, url, data=body, headers=headers, timeout=deadline.timeout()
                )
            except TRANSIENT_EXCEPTIONS as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code not in TRANSIENT_STATUS_CODES:
                    return response
                failure = f"HTTP {response.status_code}: {_error_message(response)}"
            if retry + 1 == attempts or not deadline.backoff(retry):
                break
        raise errors.PredictorUnavailable(f"TF Serving did not answer {method} {url}: {failure}")

    def _raise_for_error(self, response: requests.Response, what: str) -> None:
        code = response.status_code
        if code < 400:
            return
        message = f"TF Serving, model {self.model_name!r} {what}: HTTP {code}: "
        message += _error_message(response)
        if code == 404 or code >= 500:
            raise errors.PredictorUnavailable(message)
        # Any other 4xx: TF Serving rejected a request the gateway built, so retrying the
        # same request cannot help; it is a bug or a model that breaks the contract.
        raise errors.PredictorFailed(message)

    def _parse_outputs(self, response: requests.Response, version: int) -> list[Prediction]:
        try:
            outputs = response.json()["outputs"]
            return predictions_from_outputs(
                np.asarray(outputs[OUTPUT_PROBABILITIES], dtype=np.float32),
                np.asarray(outputs[OUTPUT_DIGIT], dtype=np.int64),
                model_name=self.model_name,
                model_version=str(version),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise errors.PredictorFailed(
                f"TF Serving, model {self.model_name!r} version {version}: unexpected "
                f"predict response ({type(error).__name__}: {error})"
            ) from error


def predict_request_body(batch: np.ndarray) -> bytes:
    """TF Serving's columnar predict request for ``batch``, as JSON bytes."""
    pixels = np.ascontiguousarray(batch, dtype=np.float32)  # what orjson serialises
    return orjson.dumps(
        {"signature_name": SIGNATURE_NAME, "inputs": {INPUT_NAME: pixels}},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _contract_mismatch(metadata: dict[str, Any], version: int) -> str | None:
    """Compare TF Serving's GetModelMetadata JSON with the serving contract."""
    try:
        signature = metadata["metadata"]["signature_def"]["signature_def"][SIGNATURE_NAME]
        image = signature["inputs"][INPUT_NAME]
        dims = [int(dim["size"]) for dim in image["tensor_shape"]["dim"]]
        outputs = set(signature["outputs"])
    except (KeyError, TypeError, ValueError) as error:
        return f"version {version}: metadata has no usable {SIGNATURE_NAME!r} ({error!r})"
    if image.get("dtype") != EXPECTED_INPUT_DTYPE or dims != EXPECTED_INPUT_DIMS:
        return (
            f"version {version}: input {INPUT_NAME!r} is {image.get('dtype')} {dims}, "
            f"expected {EXPECTED_INPUT_DTYPE} {EXPECTED_INPUT_DIMS}"
        )
    missing = {OUTPUT_PROBABILITIES, OUTPUT_DIGIT} - outputs
    if missing:
        return f"version {version}: signature lacks outputs {sorted(missing)}"
    return None
