"""The in-process predictor with real exported SavedModels and real TensorFlow."""

from __future__ import annotations

import gc
import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gateway import errors
from gateway.config import Config
from gateway.predictors import make_predictor
from gateway.predictors.saved_model import SavedModelPredictor
from tests.support.models import (
    export_untrained_version,
    install_version,
    newest_version_dir,
    reference_outputs,
)
from tests.support.python import run_python
from tests.support.waiting import wait_until

POLL_SECONDS = 0.1


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models" / "mnist"


@pytest.fixture
def predictor(model_dir: Path) -> Iterator[SavedModelPredictor]:
    predictor = SavedModelPredictor(model_dir, model_name="mnist", poll_seconds=POLL_SECONDS)
    yield predictor
    predictor.close()


def test_serves_the_highest_complete_version_and_ignores_everything_else(
    exported_model_dir, mnist_test_set, model_dir, predictor
):
    exported = newest_version_dir(exported_model_dir)
    install_version(exported, model_dir, 1)
    install_version(exported, model_dir, 3)
    (model_dir / "7").mkdir()  # no saved_model.pb: an export still being written by hand
    (model_dir / "9").write_text("a file, not a version")
    (model_dir / "latest").mkdir()
    install_version(exported, model_dir / ".tmp-export", 12).rename(model_dir / ".tmp-12")
    images = mnist_test_set[0][:16]

    predictions = predictor.predict(images)

    probabilities, digits = reference_outputs(model_dir / "3", images)
    assert [p.model_version for p in predictions] == ["3"] * 16
    assert [p.digit for p in predictions] == digits.tolist()
    np.testing.assert_allclose([p.probabilities for p in predictions], probabilities, atol=1e-6)
    status = predictor.status()
    assert (status.ready, status.model_version) == (True, "3")


def test_a_loaded_model_is_frozen_out_of_the_garbage_collectors_view(
    exported_model_dir, mnist_test_set, model_dir, predictor
):
    install_version(newest_version_dir(exported_model_dir), model_dir, 1)
    gc.unfreeze()

    predictor.predict(mnist_test_set[0][:1])

    # The model's objects (and TensorFlow's) are frozen: full collections skip them.
    assert gc.get_freeze_count() > 100_000
    gc.unfreeze()  # leave the test process's collector as it was


def test_status_does_not_wait_for_the_first_load(exported_model_dir, model_dir, predictor):
    install_version(newest_version_dir(exported_model_dir), model_dir, 1)

    started = time.monotonic()
    first = predictor.status()
    assert time.monotonic() - started < 0.5
    # Loading takes far longer than status() does: it reports the load, not "no model".
    assert not first.ready
    assert "loading the newest version" in first.detail
    wait_until(lambda: predictor.status().ready, timeout=60, what="the first load")


def test_without_a_version_it_is_not_ready_until_one_appears(
    exported_model_dir, mnist_test_set, model_dir, predictor
):
    model_dir.mkdir(parents=True)

    with pytest.raises(errors.PredictorUnavailable, match="no model version"):
        predictor.predict(mnist_test_set[0][:1])
    status = predictor.status()
    assert not status.ready
    assert "no model version in MODEL_DIR" in status.detail

    install_version(newest_version_dir(exported_model_dir), model_dir, 1)
    wait_until(lambda: predictor.status().ready, timeout=30, what="the new version to load")
    assert predictor.predict(mnist_test_set[0][:1])[0].model_version == "1"


@contextmanager
def steady_predictions(
    predictor: SavedModelPredictor, images: np.ndarray
) -> Iterator[tuple[list[str], list[Exception]]]:
    """Predict ``images`` in a loop on another thread while the body runs; yields the
    versions that answered (one entry per call, in order) and the failures."""
    versions_seen: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def predict_until_stopped() -> None:
        while not stop.is_set():
            try:
                versions_seen.extend({p.model_version for p in predictor.predict(images)})
            except Exception as error:
                failures.append(error)

    thread = threading.Thread(target=predict_until_stopped)
    thread.start()
    try:
        yield versions_seen, failures
    finally:
        stop.set()
        thread.join()


def test_a_new_version_is_swapped_in_without_failing_requests_in_flight(
    exported_model_dir, mnist_test_set, model_dir, predictor
):
    install_version(newest_version_dir(exported_model_dir), model_dir, 1)
    images = mnist_test_set[0][:8]
    assert predictor.predict(images)[0].model_version == "1"
    with steady_predictions(predictor, images) as (versions_seen, failures):
        new_version = export_untrained_version(model_dir)
        wait_until(lambda: str(new_version) in versions_seen, timeout=60, what="the new version")

    assert failures == []
    assert versions_seen[0] == "1"
    switched_at = versions_seen.index(str(new_version))
    assert set(versions_seen[:switched_at]) == {"1"}
    assert set(versions_seen[switched_at:]) == {str(new_version)}


def test_a_version_that_fails_to_load_is_skipped(
    exported_model_dir, mnist_test_set, model_dir, predictor, caplog
):
    exported = newest_version_dir(exported_model_dir)
    install_version(exported, model_dir, 1)
    assert predictor.predict(mnist_test_set[0][:1])[0].model_version == "1"

    broken = model_dir / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protocol buffer")
    wait_until(
        lambda: "version 2 failed to load" in caplog.text, timeout=30, what="the failed load"
    )
    assert predictor.predict(mnist_test_set[0][:1])[0].model_version == "1"

    install_version(exported, model_dir, 3)
    wait_until(lambda: predictor.status().model_version == "3", timeout=30, what="version 3")


def _missing_saved_model_pb(exported: Path, target: Path) -> None:
    shutil.copytree(exported, target)
    (target / "saved_model.pb").unlink()


def _truncated_variables(exported: Path, target: Path) -> None:
    shutil.copytree(exported, target)
    for data in (target / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _wrong_signature(exported: Path, target: Path) -> None:
    module = tf.Module()
    module.serve = tf.function(
        lambda x: {"y": x * 2.0},
        input_signature=[tf.TensorSpec([None, 10], tf.float32, name="x")],
    )
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})


@pytest.mark.parametrize(
    "damage", [_missing_saved_model_pb, _truncated_variables, _wrong_signature]
)
def test_a_damaged_version_under_load_is_never_served_and_never_stops_serving(
    damage, exported_model_dir, mnist_test_set, model_dir, predictor
):
    exported = newest_version_dir(exported_model_dir)
    install_version(exported, model_dir, 1)
    images = mnist_test_set[0][:4]
    assert predictor.predict(images)[0].model_version == "1"
    with steady_predictions(predictor, images) as (versions_seen, failures):
        # Written as an export writes: under a temporary name, then one rename.
        staging = model_dir / ".tmp-damaged"
        damage(exported, staging)
        staging.rename(model_dir / "2")
        # Many polls pass (every POLL_SECONDS) while requests flow.
        time.sleep(2.0)
        install_version(exported, model_dir, 3)
        wait_until(lambda: "3" in versions_seen, timeout=60, what="the next good version")
    assert failures == []
    assert "2" not in versions_seen
    assert set(versions_seen) == {"1", "3"}


def test_a_batch_of_the_wrong_shape_is_a_predictor_failure_not_a_crash(
    exported_model_dir, model_dir, predictor
):
    install_version(newest_version_dir(exported_model_dir), model_dir, 1)

    with pytest.raises(errors.PredictorFailed, match="shape"):
        predictor.predict(np.zeros((2, 28, 28), np.float32))
    assert predictor.status().ready


def test_make_predictor_batches_concurrent_callers_over_the_in_process_model(
    exported_model_dir, mnist_test_set
):
    predictor = make_predictor(Config(model_dir=exported_model_dir, batch_window_ms=5))
    images = mnist_test_set[0][:32]
    _, expected_digits = reference_outputs(newest_version_dir(exported_model_dir), images)
    results: dict[int, int] = {}

    def predict_one(index: int) -> None:
        results[index] = predictor.predict(images[index : index + 1])[0].digit

    try:
        threads = [threading.Thread(target=predict_one, args=(i,)) for i in range(len(images))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        predictor.close()

    assert [results[i] for i in range(len(images))] == expected_digits.tolist()


# Run in a fresh interpreter: monkey-patching is process-wide and cannot be undone, and
# TensorFlow must not be imported yet.
GEVENT_FIRST_LOAD_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import sys
    from pathlib import Path

    import numpy as np

    from gateway.predictors.saved_model import SavedModelPredictor

    assert "tensorflow" not in sys.modules
    # threads=None: TensorFlow's thread pools are left alone, so nothing imports it first.
    predictor = SavedModelPredictor(Path(MODEL_DIR), model_name="mnist", poll_seconds=60)
    print(*(p.digit for p in predictor.predict(np.load(IMAGES_FILE))))
    predictor.close()
    """
)


def test_under_gevent_the_first_model_load_imports_tensorflow_safely(
    exported_model_dir, mnist_test_set, tmp_path
):
    # The load runs on a native thread, where TensorFlow's first import used to fail (the
    # reason is at SavedModelPredictor._watch, which now imports it first).
    images = mnist_test_set[0][:8]
    images_file = tmp_path / "images.npy"
    np.save(images_file, images)
    header = f"MODEL_DIR = {str(exported_model_dir)!r}\nIMAGES_FILE = {str(images_file)!r}\n"

    digits = run_python(header + GEVENT_FIRST_LOAD_SCRIPT, timeout=180).split()

    _, expected = reference_outputs(newest_version_dir(exported_model_dir), images)
    assert [int(d) for d in digits] == expected.tolist()
