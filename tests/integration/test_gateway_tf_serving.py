"""The gateway in cluster mode over real HTTP: TF Serving's REST API for the model.

TF Serving itself (``tensorflow_model_server``) is not installable here, so the model
server is ``TFServingStandIn`` (serving_standin): a stand-in that implements TF Serving's
documented REST API and runs the real exported SavedModel. Production uses the official
``tensorflow/serving`` image.
"""

from __future__ import annotations

import pytest
import requests

from gateway.config import Config
from gateway.web.app import create_app
from serving_standin.server import TFServingStandIn
from tests.support.http import serve
from tests.support.images import encode

API = "/api/v1/predictions"


@pytest.fixture
def serving(exported_model_dir):
    with TFServingStandIn(exported_model_dir, poll_seconds=0.1) as stand_in:
        yield stand_in


@pytest.fixture
def gateway(serving, tmp_path):
    config = Config(
        serving_url=serving.url,
        sqlite_path=tmp_path / "predictions.sqlite3",
        serving_timeout_seconds=2.0,
        serving_retries=1,
    )
    with serve(create_app(config)) as url:
        yield url


def post_digits(url: str, images) -> requests.Response:
    files = [("file", (f"{i}.png", encode(image))) for i, image in enumerate(images)]
    return requests.post(url + API, files=files, timeout=30)


def test_predictions_come_from_tf_serving_and_name_its_version(gateway, serving, mnist_test_set):
    images, _ = mnist_test_set
    response = post_digits(gateway, images[:4])
    assert response.status_code == 201, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 4
    assert {p["model_version"] for p in predictions} == {"1"}
    assert serving.requests_received["predict"] >= 1

    ready = requests.get(gateway + "/readyz", timeout=10).json()
    assert ready["model"] == {
        "ready": True,
        "name": "mnist",
        "version": "1",
        "detail": ready["model"]["detail"],
    }


def test_tf_serving_down_is_503_with_retry_after_and_recovers(gateway, serving, mnist_test_set):
    images, _ = mnist_test_set
    serving.stop()
    refused = post_digits(gateway, images[:1])
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "model_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    not_ready = requests.get(gateway + "/readyz", timeout=10)
    assert not_ready.status_code == 503
    assert not_ready.json()["model"]["ready"] is False
    assert requests.get(gateway + API, timeout=10).json()["predictions"] == []

    serving.start()
    assert post_digits(gateway, images[:1]).status_code == 201
    assert requests.get(gateway + "/readyz", timeout=10).status_code == 200


def test_tf_serving_timeouts_are_503(gateway, serving, mnist_test_set):
    images, _ = mnist_test_set
    serving.delay_predictions(5.0)
    timed_out = post_digits(gateway, images[:1])
    assert timed_out.status_code == 503, timed_out.text
    assert timed_out.json()["error"]["code"] == "model_unavailable"

    serving.delay_predictions(0.0)
    assert post_digits(gateway, images[:1]).status_code == 201


def test_a_transient_tf_serving_error_is_retried_invisibly(gateway, serving, mnist_test_set):
    images, _ = mnist_test_set
    serving.fail_next_predictions(1, status=503)
    assert post_digits(gateway, images[:1]).status_code == 201


def test_a_tf_serving_input_error_is_a_502_not_a_retry(gateway, serving, mnist_test_set):
    images, _ = mnist_test_set
    serving.fail_next_predictions(
        1, status=400, message="Input to reshape is a tensor with 1 values"
    )
    failed = post_digits(gateway, images[:1])
    assert failed.status_code == 502, failed.text
    assert "reshape" in failed.json()["error"]["message"]
