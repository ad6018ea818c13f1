"""The JSON API end to end over real HTTP: in-process SavedModel, SQLite store."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import jsonschema
import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image

from gateway.config import Config
from gateway.pipeline.preprocess import preprocess
from gateway.web.api import openapi_document
from gateway.web.app import create_app
from tests.support.http import serve, wait_until_ready
from tests.support.images import encode, paper_photo

API = "/api/v1/predictions"


@pytest.fixture(scope="module")
def gateway(exported_model_dir, tmp_path_factory):
    config = Config(
        model_dir=exported_model_dir,
        sqlite_path=tmp_path_factory.mktemp("store") / "predictions.sqlite3",
        max_upload_bytes=2 * 1024 * 1024,
        max_images_per_request=8,
        max_image_pixels=4_000_000,
    )
    with serve(create_app(config)) as url:
        wait_until_ready(url)
        yield url


@pytest.fixture(scope="module")
def digits(mnist_test_set):
    images, labels = mnist_test_set
    return images[:16], labels[:16]


@pytest.fixture(scope="module")
def served_signature(exported_model_dir):
    version = max(int(p.name) for p in exported_model_dir.iterdir() if p.name.isdigit())
    return tf.saved_model.load(str(exported_model_dir / str(version))).signatures["serving_default"]


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def stored_count(gateway: str) -> int:
    count, cursor = 0, None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = requests.get(gateway + API, params=params, timeout=10).json()
        count += len(page["predictions"])
        cursor = page["next_cursor"]
        if cursor is None:
            return count


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    schema_validator("Error").validate(body)
    assert body["error"]["code"] == code


def test_multipart_upload_is_predicted_stored_and_found_again(gateway, digits, served_signature):
    image, _ = digits[0][0], digits[1][0]
    upload = paper_photo(image)
    response = requests.post(gateway + API, files={"file": ("sheet.jpg", upload)}, timeout=30)

    assert response.status_code == 201, response.text
    (prediction,) = response.json()["predictions"]
    schema_validator("Prediction").validate(prediction)
    expected = served_signature(
        image=tf.constant(preprocess(upload, max_pixels=10**7)[None, ..., None])
    )
    assert prediction["digit"] == int(expected["digit"][0])
    np.testing.assert_allclose(
        prediction["probabilities"], expected["probabilities"][0].numpy(), atol=1e-5
    )
    assert prediction["confidence"] == pytest.approx(max(prediction["probabilities"]))
    assert prediction["filename"] == "sheet.jpg"
    assert prediction["model_version"] == "1"

    fetched = requests.get(f"{gateway}{API}/{prediction['id']}", timeout=10)
    assert fetched.status_code == 200
    assert fetched.json() == prediction


def test_several_images_are_answered_in_upload_order(gateway, digits):
    images = digits[0][:6]
    files = [("file", (f"digit-{i}.png", encode(image))) for i, image in enumerate(images)]
    batch = requests.post(gateway + API, files=files, timeout=30)
    assert batch.status_code == 201, batch.text

    singles = [
        requests.post(gateway + API, files={"file": ("one.png", encode(image))}, timeout=30).json()[
            "predictions"
        ][0]
        for image in images
    ]
    predictions = batch.json()["predictions"]
    assert [p["filename"] for p in predictions] == [f"digit-{i}.png" for i in range(6)]
    assert [p["digit"] for p in predictions] == [p["digit"] for p in singles]
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], [p["probabilities"] for p in singles], atol=1e-5
    )


def test_json_base64_and_data_urls(gateway, digits):
    png = encode(digits[0][1])
    plain = base64.b64encode(png).decode()
    data_url = "data:image/png;base64," + plain
    response = requests.post(gateway + API, json={"images": [plain, data_url]}, timeout=30)
    assert response.status_code == 201, response.text
    first, second = response.json()["predictions"]
    assert first["digit"] == second["digit"]
    assert first["upload_sha256"] == second["upload_sha256"]
    assert first["filename"] is None


def test_history_is_newest_first_with_cursor_paging(gateway, digits):
    posted = [
        requests.post(
            gateway + API, files={"file": (f"h{i}.png", encode(digits[0][i]))}, timeout=30
        ).json()["predictions"][0]["id"]
        for i in range(5)
    ]
    first = requests.get(gateway + API, params={"limit": 3}, timeout=10).json()
    second = requests.get(
        gateway + API, params={"limit": 2, "cursor": first["next_cursor"]}, timeout=10
    ).json()
    newest_five = [p["id"] for p in first["predictions"] + second["predictions"]]
    assert newest_five == list(reversed(posted))


def test_feedback_records_the_true_label(gateway, digits):
    prediction = requests.post(
        gateway + API, files={"file": ("f.png", encode(digits[0][2]))}, timeout=30
    ).json()["predictions"][0]
    response = requests.post(
        f"{gateway}{API}/{prediction['id']}/feedback", json={"label": 7}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == 7
    assert requests.get(f"{gateway}{API}/{prediction['id']}", timeout=10).json()["label"] == 7


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions in a few dozen bytes: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_UPLOADS = {
    "missing field": (dict(files={"picture": ("a.png", b"x")}), 400, "missing_field"),
    "empty file": (dict(files={"file": ("a.png", b"")}), 400, "empty_file"),
    "not an image": (
        dict(files={"file": ("a.txt", b"hello, world" * 10)}),
        415,
        "unsupported_image",
    ),
    "no ink": (dict(files={"file": ("blank.png", _blank_png())}), 422, "no_digit_found"),
    "decompression bomb": (
        dict(files={"file": ("bomb.png", _png_header_only(100_000, 100_000))}),
        413,
        "image_too_large",
    ),
    "body over the limit": (
        dict(files={"file": ("big.png", b"\0" * (3 * 1024 * 1024))}),
        413,
        "payload_too_large",
    ),
    "malformed json": (
        dict(data=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "malformed_json",
    ),
    "json without images": (dict(json={"pictures": []}), 400, "missing_field"),
    "malformed base64": (dict(json={"images": ["***not base64***"]}), 400, "malformed_base64"),
    "wrong content type": (
        dict(data=b"raw", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_content_type",
    ),
    "too many images": (
        dict(json={"images": [base64.b64encode(_blank_png()).decode()] * 9}),
        413,
        "too_many_images",
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_uploads_get_a_json_error_and_store_nothing(gateway, case):
    kwargs, status, code = BAD_UPLOADS[case]
    before = stored_count(gateway)
    assert_error(requests.post(gateway + API, timeout=30, **kwargs), status, code)
    assert stored_count(gateway) == before


def test_truncated_image_is_rejected(gateway, digits):
    jpeg = paper_photo(digits[0][3])
    before = stored_count(gateway)
    response = requests.post(
        gateway + API, files={"file": ("cut.jpg", jpeg[: len(jpeg) // 2])}, timeout=30
    )
    assert_error(response, 400, "corrupt_image")
    assert stored_count(gateway) == before


def test_one_bad_image_in_a_batch_stores_none_of_it(gateway, digits):
    before = stored_count(gateway)
    files = [("file", ("good.png", encode(digits[0][4]))), ("file", ("bad.png", b"not an image"))]
    assert_error(requests.post(gateway + API, files=files, timeout=30), 415, "unsupported_image")
    assert stored_count(gateway) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"label": 10}, 422, "invalid_label"),
        ({"label": "3"}, 422, "invalid_label"),
        ({"label": 7.5}, 422, "invalid_label"),
        ({"label": True}, 422, "invalid_label"),
        ({}, 400, "missing_field"),
    ],
)
def test_bad_feedback(gateway, digits, body, status, code):
    prediction = requests.post(
        gateway + API, files={"file": ("f.png", encode(digits[0][5]))}, timeout=30
    ).json()["predictions"][0]
    response = requests.post(f"{gateway}{API}/{prediction['id']}/feedback", json=body, timeout=10)
    assert_error(response, status, code)
    assert requests.get(f"{gateway}{API}/{prediction['id']}", timeout=10).json()["label"] is None


def test_unknown_ids_and_bad_paging(gateway):
    unknown = "5a4f6f8e-0000-11f0-8000-000000000001"
    assert_error(requests.get(f"{gateway}{API}/{unknown}", timeout=10), 404, "not_found")
    assert_error(requests.get(f"{gateway}{API}/not-a-uuid", timeout=10), 404, "not_found")
    assert_error(
        requests.post(f"{gateway}{API}/{unknown}/feedback", json={"label": 1}, timeout=10),
        404,
        "not_found",
    )
    assert_error(requests.get(gateway + API, params={"limit": 0}, timeout=10), 400, "invalid_limit")
    assert_error(
        requests.get(gateway + API, params={"cursor": "forged"}, timeout=10), 400, "invalid_cursor"
    )


def test_health_readiness_and_metrics(gateway, digits):
    assert requests.get(gateway + "/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(gateway + "/readyz", timeout=10)
    assert ready.status_code == 200
    schema_validator("Readiness").validate(ready.json())
    assert ready.json()["model"]["version"] == "1"

    requests.post(gateway + API, files={"file": ("m.png", encode(digits[0][6]))}, timeout=30)
    metrics = requests.get(gateway + "/metrics", timeout=10)
    assert metrics.status_code == 200
    text = metrics.text
    assert (
        'gateway_http_requests_total{method="POST",route="/api/v1/predictions",status="201"}'
        in text
    )
    for name in (
        "gateway_http_request_duration_seconds_bucket",
        "gateway_predictions_total",
        "gateway_model_duration_seconds_count",
        'gateway_store_duration_seconds_count{operation="save"}',
        "gateway_preprocess_duration_seconds_count",
        "gateway_model_batch_images_bucket",
        "gateway_store_batch_records_bucket",
    ):
        assert name in text


def test_upload_page_and_openapi(gateway):
    page = requests.get(gateway + "/", timeout=10)
    assert page.status_code == 200
    assert 'type="file"' in page.text and "app.js" in page.text
    assert "/input.png" in requests.get(gateway + "/static/app.js", timeout=10).text
    icon = requests.get(gateway + "/favicon.ico", timeout=10)
    assert icon.status_code == 200
    assert icon.headers["Content-Type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")

    document = requests.get(gateway + "/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")


def test_openapi_documents_every_route():
    app = create_app(Config())
    documented = set(openapi_document()["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint in {"static", "ui.index"}:
            continue
        assert rule.rule.replace("<prediction_id>", "{id}") in documented, rule.rule


def test_no_model_yet_means_not_ready_and_503(tmp_path, digits):
    config = Config(model_dir=tmp_path / "empty", sqlite_path=tmp_path / "store.sqlite3")
    with serve(create_app(config)) as url:
        ready = requests.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["model"]["ready"] is False
        assert ready.json()["store"]["ready"] is True
        response = requests.post(
            url + API, files={"file": ("a.png", encode(digits[0][0]))}, timeout=30
        )
        assert_error(response, 503, "model_unavailable")
        assert int(response.headers["Retry-After"]) > 0
        assert stored_count(url) == 0


def test_an_integral_number_is_a_label(gateway, digits):
    prediction = requests.post(
        gateway + API, files={"file": ("f.png", encode(digits[0][7]))}, timeout=30
    ).json()["predictions"][0]

    response = requests.post(
        f"{gateway}{API}/{prediction['id']}/feedback", json={"label": 7.0}, timeout=10
    )

    assert response.status_code == 200, response.text
    assert response.json()["label"] == 7
    assert isinstance(response.json()["label"], int)


def test_the_input_the_model_saw_is_served_as_a_png(gateway, digits):
    upload = paper_photo(digits[0][8])
    prediction = requests.post(
        gateway + API, files={"file": ("photo.jpg", upload)}, timeout=30
    ).json()["predictions"][0]

    response = requests.get(f"{gateway}{API}/{prediction['id']}/input.png", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert "immutable" in response.headers["Cache-Control"]
    image = Image.open(io.BytesIO(response.content))
    assert (image.size, image.mode) == ((28, 28), "L")
    expected = preprocess(upload, max_pixels=4_000_000).reshape(28, 28) * 255
    expected = expected.round().astype(np.uint8)
    assert np.abs(np.asarray(image).astype(int) - expected).max() <= 1
    unknown = "5a4f6f8e-0000-11f0-8000-000000000001"
    assert_error(requests.get(f"{gateway}{API}/{unknown}/input.png", timeout=10), 404, "not_found")


def test_stats_are_the_stores_aggregates_of_the_window(gateway, digits):
    before = requests.get(gateway + "/api/v1/stats", params={"days": 1}, timeout=10).json()
    prediction = requests.post(
        gateway + API, files={"file": ("s.png", encode(digits[0][9]))}, timeout=30
    ).json()["predictions"][0]
    wrong = (prediction["digit"] + 1) % 10
    requests.post(f"{gateway}{API}/{prediction['id']}/feedback", json={"label": wrong}, timeout=10)

    response = requests.get(gateway + "/api/v1/stats", params={"days": 1}, timeout=10)

    assert response.status_code == 200
    stats = response.json()
    schema_validator("Stats").validate(stats)
    assert stats["bucket_seconds"] == 3600 and len(stats["per_bucket"]) == 24
    assert stats["predictions"] == before["predictions"] + 1 == sum(stats["per_bucket"])
    assert stats["digits"][prediction["digit"]] == before["digits"][prediction["digit"]] + 1
    assert stats["labelled"] == before["labelled"] + 1
    assert stats["confusion"][wrong][prediction["digit"]] >= 1
    assert stats["accuracy"] == stats["correct"] / stats["labelled"]
    assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"] <= stats["latency_ms"]["max"]
    assert [(m["model_name"], m["model_version"]) for m in stats["model_versions"]] == [
        ("mnist", "1")
    ]
    # Every labelled prediction of the window was made by version 1: its feedback is all of it.
    (version,) = stats["model_versions"]
    assert (version["labelled"], version["correct"]) == (stats["labelled"], stats["correct"])
    assert version["accuracy"] == stats["accuracy"]
    week = requests.get(gateway + "/api/v1/stats", timeout=10).json()
    assert week["bucket_seconds"] == 86400 and len(week["per_bucket"]) == 7
    for days in ("0", "91", "x", "²"):
        assert_error(
            requests.get(gateway + "/api/v1/stats", params={"days": days}, timeout=10),
            400,
            "invalid_days",
        )


def test_every_405_says_which_methods_are_allowed(gateway):
    paths = {
        "/api/v1/predictions": {"GET", "POST"},
        "/api/v1/predictions/5a4f6f8e-0000-11f0-8000-000000000001": {"GET"},
        "/api/v1/stats": {"GET"},
        "/healthz": {"GET"},
    }
    for path, allowed in paths.items():
        for method in ("PUT", "DELETE", "PATCH", "TRACE"):
            response = requests.request(method, gateway + path, timeout=10)
            assert response.status_code == 405, (method, path)
            assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
            schema_validator("Error").validate(response.json())


def test_an_upload_over_the_size_limit_is_refused_in_plain_words(gateway):
    response = requests.post(
        gateway + API, files={"file": ("big.png", b"\0" * (3 * 1024 * 1024))}, timeout=30
    )

    assert_error(response, 413, "payload_too_large")
    assert response.json()["error"]["message"] == "the upload is larger than the 2 MB limit"
