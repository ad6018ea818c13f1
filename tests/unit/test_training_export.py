"""Export: the TF Serving layout, the serving signature, warm-up records, version numbering
and the guarantee that no half-written version is ever visible."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from mnist_contract import (
    IMAGE_SHAPE,
    INPUT_NAME,
    METRICS_FILE,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE_NAME,
    version_numbers,
)
from training import export
from training.data import SHA256
from training.export import WARMUP_FILE, export_version
from training.model import build_model


def export_untrained(base: Path) -> Path:
    return export_version(
        build_model(), base, metrics={"purpose": "test"}, warmup_batch=np.zeros((2, *IMAGE_SHAPE))
    )


def test_exported_dir_has_the_tf_serving_layout(exported_model_dir):
    assert [entry.name for entry in exported_model_dir.iterdir()] == ["1"]
    version = exported_model_dir / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert (version / WARMUP_FILE).is_file()
    assert (version / METRICS_FILE).is_file()


def test_signature_has_the_serving_contract(exported_model_dir):
    signature = tf.saved_model.load(str(exported_model_dir / "1")).signatures[SIGNATURE_NAME]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == [INPUT_NAME]
    assert inputs[INPUT_NAME].dtype == tf.float32
    assert inputs[INPUT_NAME].shape.as_list() == [None, 28, 28, 1]
    outputs = signature.structured_outputs
    assert set(outputs) == {OUTPUT_PROBABILITIES, OUTPUT_DIGIT}
    assert outputs[OUTPUT_PROBABILITIES].dtype == tf.float32
    assert outputs[OUTPUT_PROBABILITIES].shape.as_list() == [None, 10]
    assert outputs[OUTPUT_DIGIT].dtype == tf.int64
    assert outputs[OUTPUT_DIGIT].shape.as_list() == [None]


def test_signature_recognises_real_digits(exported_model_dir, mnist_test_set):
    images, labels = mnist_test_set
    signature = tf.saved_model.load(str(exported_model_dir / "1")).signatures[SIGNATURE_NAME]
    outputs = signature(**{INPUT_NAME: tf.constant(images[:200])})
    probabilities = outputs[OUTPUT_PROBABILITIES].numpy()
    digits = outputs[OUTPUT_DIGIT].numpy()
    assert probabilities.shape == (200, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(digits, probabilities.argmax(axis=1))
    # A briefly trained fixture model, so a loose bar: far above chance (10%).
    assert np.mean(digits == labels[:200]) > 0.8


def test_metrics_describe_the_run(exported_model_dir):
    metrics = json.loads((exported_model_dir / "1" / METRICS_FILE).read_text())
    assert metrics["version"] == 1
    assert metrics["arch"] == "compact"
    assert metrics["data_sha256"] == SHA256
    assert metrics["tf_version"] == tf.__version__
    assert sorted(metrics["per_class_accuracy"]) == [str(digit) for digit in range(10)]
    assert 0.8 < metrics["test_accuracy"] <= 1.0
    expected = {"epochs", "seed", "train_seconds", "parameter_count", "created_at"}
    assert expected <= set(metrics)


def test_warmup_records_are_prediction_logs_of_real_images(exported_model_dir, mnist_test_set):
    path = exported_model_dir / "1" / WARMUP_FILE
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(path))
    ]
    requests = [log.predict_log.request for log in logs]
    assert [request.model_spec.signature_name for request in requests] == [SIGNATURE_NAME] * 2
    batches = [tf.make_ndarray(request.inputs[INPUT_NAME]) for request in requests]
    assert [batch.shape for batch in batches] == [(1, 28, 28, 1), (8, 28, 28, 1)]
    assert all(batch.dtype == np.float32 for batch in batches)
    np.testing.assert_array_equal(batches[1], mnist_test_set[0][:8])


def test_next_version_goes_past_existing_ones_and_ignores_junk(tmp_path):
    for name in ["3", "12", "7", ".tmp-99", "15abc", "latest", "\u0663"]:  # U+0663: Arabic 3
        (tmp_path / name).mkdir()
    (tmp_path / "40").write_text("a stray file; its number is still never reused")
    assert version_numbers(tmp_path) == [3, 7, 12, 40]
    assert export_untrained(tmp_path).name == "41"


def test_first_version_is_one_and_base_dir_is_created(tmp_path):
    assert export_untrained(tmp_path / "new" / "base") == tmp_path / "new" / "base" / "1"


def test_failed_save_leaves_no_version_and_no_temp_dir(tmp_path, monkeypatch):
    real_save = tf.saved_model.save

    def save_then_crash(obj, directory, **kwargs):
        real_save(obj, directory, **kwargs)  # a complete-looking SavedModel is on disk ...
        raise OSError("disk full")  # ... when the export fails

    monkeypatch.setattr(tf.saved_model, "save", save_then_crash)
    (tmp_path / "1").mkdir()
    with pytest.raises(OSError, match="disk full"):
        export_untrained(tmp_path)
    assert [entry.name for entry in tmp_path.iterdir()] == ["1"]


def test_a_version_taken_meanwhile_makes_the_export_take_the_next(tmp_path, monkeypatch):
    real_next_version = export.next_version

    def next_version_racing_another_exporter(base_dir):
        number = real_next_version(base_dir)
        if number == 1:  # another exporter publishes 1 right after we picked it
            (base_dir / "1").mkdir()
            (base_dir / "1" / "saved_model.pb").write_bytes(b"theirs")
        return number

    monkeypatch.setattr(export, "next_version", next_version_racing_another_exporter)
    assert export_untrained(tmp_path).name == "2"
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"theirs"
    metrics = json.loads((tmp_path / "2" / METRICS_FILE).read_text())
    assert metrics["version"] == 2


def test_a_poller_never_sees_a_version_without_its_saved_model(tmp_path):
    incomplete_sightings = []
    polls = 0
    done = threading.Event()

    def poll():
        nonlocal polls
        while not done.is_set():
            for version in version_numbers(tmp_path):
                if not (tmp_path / str(version) / "saved_model.pb").is_file():
                    incomplete_sightings.append(version)
            polls += 1

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        exported = export_untrained(tmp_path)
    finally:
        done.set()
        poller.join()
    assert incomplete_sightings == []
    assert polls > 10, "the poller must have looked while the export was in progress"
    assert [entry.name for entry in tmp_path.iterdir()] == [exported.name]
