"""The TF Serving predict request body: every pixel arrives as the float32 the gateway made."""

from __future__ import annotations

import json

import numpy as np

from gateway.predictors.tf_serving import predict_request_body
from mnist_contract import INPUT_NAME, SIGNATURE_NAME


def test_the_body_carries_each_float32_pixel_exactly():
    rng = np.random.default_rng(7)
    batch = rng.random((3, 28, 28, 1), dtype=np.float32)
    batch[0] = 0.0
    batch[1, 0, 0, 0] = np.float32(1) / np.float32(255)

    request = json.loads(predict_request_body(batch))

    assert request["signature_name"] == SIGNATURE_NAME
    sent = np.asarray(request["inputs"][INPUT_NAME], dtype=np.float32)
    assert sent.shape == batch.shape
    np.testing.assert_array_equal(sent, batch)


def test_a_view_or_another_dtype_is_sent_as_float32_values():
    batch = np.linspace(0, 1, 2 * 28 * 28 * 2, dtype=np.float64).reshape(2, 28, 28, 2)
    view = batch[..., :1]  # not contiguous

    sent = np.asarray(json.loads(predict_request_body(view))["inputs"][INPUT_NAME])

    np.testing.assert_array_equal(sent.astype(np.float32), view.astype(np.float32))
