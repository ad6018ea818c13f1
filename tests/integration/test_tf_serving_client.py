"""The TF Serving REST client against the TF Serving stand-in serving the real model."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf

from gateway import errors
from gateway.config import Config
from gateway.predictors import make_predictor
from gateway.predictors.tf_serving import TFServingPredictor
from mnist_contract import available_versions
from serving_standin.server import TFServingStandIn
from tests.support.models import (
    export_untrained_version,
    newest_version_dir,
    reference_outputs,
)
from tests.support.waiting import wait_until


@pytest.fixture
def serving(exported_model_dir: Path) -> Iterator[TFServingStandIn]:
    with TFServingStandIn(exported_model_dir, poll_seconds=0.1) as stand_in:
        yield stand_in


@pytest.fixture
def make_client(serving: TFServingStandIn) -> Iterator[Callable[..., TFServingPredictor]]:
    clients: list[TFServingPredictor] = []

    def make(**options: object) -> TFServingPredictor:
        settings = {
            "model_name": "mnist",
            "timeout_seconds": 5.0,
            "retries": 2,
            "version_refresh_seconds": 60.0,
            **options,
        }
        client = TFServingPredictor(serving.url, **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("count", [1, 24])
def test_predictions_equal_the_saved_model_and_record_the_served_version(
    exported_model_dir, mnist_test_set, make_client, count
):
    images = mnist_test_set[0][:count]
    version_dir = newest_version_dir(exported_model_dir)

    predictions = make_client().predict(images)

    probabilities, digits = reference_outputs(version_dir, images)
    assert [p.digit for p in predictions] == digits.tolist()
    np.testing.assert_allclose([p.probabilities for p in predictions], probabilities, atol=1e-6)
    assert {(p.model_name, p.model_version) for p in predictions} == {("mnist", version_dir.name)}


def test_status_is_ready_with_the_served_version(exported_model_dir, make_client):
    status = make_client().status()

    assert status.ready
    assert status.model_version == newest_version_dir(exported_model_dir).name


def test_a_pinned_version_that_is_not_served_is_not_ready_and_unavailable(
    mnist_test_set, make_client
):
    client = make_client(model_version=99)

    status = client.status()
    assert not status.ready
    assert "Could not find version 99" in status.detail
    with pytest.raises(errors.PredictorUnavailable, match="HTTP 404"):
        client.predict(mnist_test_set[0][:1])


def test_an_unknown_model_is_unavailable(mnist_test_set, make_client):
    with pytest.raises(errors.PredictorUnavailable, match="HTTP 404"):
        make_client(model_name="fashion").predict(mnist_test_set[0][:1])


def test_a_rejected_request_is_a_predictor_failure_and_not_retried(serving, make_client):
    with pytest.raises(errors.PredictorFailed, match=r"HTTP 400.*shape"):
        make_client().predict(np.zeros((1, 28, 28), np.float32))

    assert serving.requests_received["predict"] == 1


@pytest.mark.parametrize("status_code", [429, 502, 503, 504])
def test_transient_errors_are_retried(mnist_test_set, serving, make_client, status_code):
    serving.fail_next_predictions(2, status=status_code)

    predictions = make_client(retries=2).predict(mnist_test_set[0][:2])

    assert len(predictions) == 2
    assert serving.requests_received["predict"] == 3


def test_a_server_error_is_unavailable_without_retrying(mnist_test_set, serving, make_client):
    serving.fail_next_predictions(1, status=500, message="out of memory")

    with pytest.raises(errors.PredictorUnavailable, match="HTTP 500: out of memory"):
        make_client().predict(mnist_test_set[0][:1])
    assert serving.requests_received["predict"] == 1


def test_persistent_503_gives_up_after_the_retries(mnist_test_set, serving, make_client):
    serving.fail_next_predictions(100, status=503, message="overloaded")
    client = make_client(retries=2, timeout_seconds=2.0)

    started = time.monotonic()
    with pytest.raises(errors.PredictorUnavailable, match="HTTP 503: overloaded"):
        client.predict(mnist_test_set[0][:1])

    assert time.monotonic() - started < 2.0
    assert serving.requests_received["predict"] == 3


def test_a_slow_server_times_out_within_the_deadline(mnist_test_set, serving, make_client):
    serving.delay_predictions(3.0)
    client = make_client(timeout_seconds=0.5, retries=5)
    client.status()  # resolve the version first, so only predict is timed

    started = time.monotonic()
    with pytest.raises(errors.PredictorUnavailable, match="Timeout"):
        client.predict(mnist_test_set[0][:1])

    assert time.monotonic() - started < 1.0


def test_connection_refused_is_unavailable_and_the_client_recovers(
    mnist_test_set, serving, make_client
):
    client = make_client(timeout_seconds=1.0)
    assert client.predict(mnist_test_set[0][:1])

    serving.stop()
    started = time.monotonic()
    with pytest.raises(errors.PredictorUnavailable, match="ConnectionError"):
        client.predict(mnist_test_set[0][:1])
    assert time.monotonic() - started < 1.5
    assert not client.status().ready

    serving.start()
    assert client.status().ready
    assert len(client.predict(mnist_test_set[0][:3])) == 3


def test_a_new_version_in_tf_serving_is_used_and_recorded(
    exported_model_dir, mnist_test_set, tmp_path
):
    base = tmp_path / "mnist"
    shutil.copytree(exported_model_dir, base)
    old_version = available_versions(base)[-1]
    with TFServingStandIn(base, poll_seconds=0.1) as serving:
        client = TFServingPredictor(
            serving.url,
            model_name="mnist",
            timeout_seconds=5.0,
            retries=2,
            version_refresh_seconds=60.0,
        )
        assert client.predict(mnist_test_set[0][:1])[0].model_version == str(old_version)

        new_version = export_untrained_version(base)
        wait_until(lambda: serving.served_versions == [new_version], timeout=30, what="reload")

        # The client's cached version is now unloaded: it must find the new one by itself.
        assert client.predict(mnist_test_set[0][:1])[0].model_version == str(new_version)
        client.close()


def test_make_predictor_uses_tf_serving_when_serving_url_is_set(
    exported_model_dir, mnist_test_set, serving
):
    predictor = make_predictor(Config(serving_url=serving.url, model_name="mnist"))
    try:
        predictions = predictor.predict(mnist_test_set[0][:4])
        assert predictor.status().ready
    finally:
        predictor.close()

    _, digits = reference_outputs(newest_version_dir(exported_model_dir), mnist_test_set[0][:4])
    assert [p.digit for p in predictions] == digits.tolist()
    assert serving.requests_received["predict"] == 1


def test_the_stand_in_answers_row_and_columnar_requests_like_tf_serving(mnist_test_set, serving):
    images = mnist_test_set[0][:3].tolist()
    predict_url = f"{serving.url}/v1/models/mnist:predict"

    rows = requests.post(predict_url, json={"instances": images}, timeout=10).json()
    columns = requests.post(predict_url, json={"inputs": {"image": images}}, timeout=10).json()
    missing = requests.post(predict_url, json={"signature_name": "serving_default"}, timeout=10)
    malformed = requests.post(predict_url, data=b"{not json", timeout=10)

    assert [row["digit"] for row in rows["predictions"]] == columns["outputs"]["digit"]
    assert [row["probabilities"] for row in rows["predictions"]] == columns["outputs"][
        "probabilities"
    ]
    assert (missing.status_code, malformed.status_code) == (400, 400)
    assert "error" in missing.json() and "error" in malformed.json()


def test_a_model_that_breaks_the_serving_contract_is_not_ready(tmp_path):
    # A flat-vector model: a signature the gateway cannot feed its 28x28x1 images to.
    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.nn.softmax(image[:, :10])
        return {"probabilities": probabilities, "digit": tf.argmax(probabilities, axis=1)}

    module = tf.Module()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": serve})

    with TFServingStandIn(tmp_path) as serving:
        client = TFServingPredictor(
            serving.url,
            model_name="mnist",
            timeout_seconds=5.0,
            retries=0,
            version_refresh_seconds=60.0,
        )
        status = client.status()
        client.close()

    assert not status.ready
    assert "input 'image' is DT_FLOAT [-1, 784], expected DT_FLOAT [-1, 28, 28, 1]" in status.detail
