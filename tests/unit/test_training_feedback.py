"""training.feedback: the split by id, the weights that keep feedback from outweighing MNIST,
accuracy per model version, and reading a real SQLite store the way retraining does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.config import Config
from gateway.store import make_store, new_prediction_id, open_reader
from tests.support.records import make_record
from training.feedback import (
    accuracy_by_model_version,
    feedback_weights,
    in_holdout,
    read_feedback,
    split_feedback,
)

DAY = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def labelled_records(count: int, **changes: object) -> list:
    return [
        make_record(
            DAY + timedelta(seconds=index),
            0,
            label=index % 10,
            labelled_at=DAY + timedelta(hours=1, seconds=index),
            **changes,
        )
        for index in range(count)
    ]


def test_the_holdout_is_chosen_by_id_the_same_way_every_time() -> None:
    ids = [new_prediction_id(DAY + timedelta(milliseconds=index)) for index in range(2000)]

    chosen = [in_holdout(prediction_id, 20) for prediction_id in ids]

    assert chosen == [in_holdout(prediction_id, 20) for prediction_id in ids]
    assert 0.17 < np.mean(chosen) < 0.23
    assert not any(in_holdout(prediction_id, 0) for prediction_id in ids)
    assert all(in_holdout(prediction_id, 100) for prediction_id in ids)
    # A bigger share only adds examples to the holdout: none moves back to training.
    assert all(in_holdout(i, 30) for i, held in zip(ids, chosen, strict=True) if held)


def test_more_feedback_later_leaves_every_earlier_example_on_its_side() -> None:
    records = labelled_records(200)

    early = split_feedback(records[:120], holdout_percent=25, source="test")
    late = split_feedback(records, holdout_percent=25, source="test")

    assert early.labelled == 120 and late.labelled == 200
    early_holdout = {r.id for r in records[:120] if in_holdout(r.id, 25)}
    assert len(early.holdout.labels) == len(early_holdout)
    assert early_holdout <= {r.id for r in records if in_holdout(r.id, 25)}


def test_split_turns_stored_inputs_into_model_inputs() -> None:
    image = np.arange(784, dtype=np.uint16).astype(np.uint8)
    record = make_record(DAY, 0, input_image=image.tobytes(), label=6, labelled_at=DAY)

    feedback = split_feedback([record], holdout_percent=0, source="test")

    assert feedback.train.images.shape == (1, 28, 28, 1)
    assert feedback.train.images.dtype == np.float32
    np.testing.assert_array_equal(feedback.train.images[0, :, :, 0] * 255, image.reshape(28, 28))
    assert feedback.train.labels.tolist() == [6]
    assert feedback.holdout.images.shape == (0, 28, 28, 1)
    assert feedback.snapshot == DAY


def test_unlabelled_records_are_not_feedback() -> None:
    feedback = split_feedback([make_record(DAY)], holdout_percent=50, source="test")

    assert feedback.labelled == 0
    assert feedback.snapshot is None
    assert feedback.by_model_version == {}


def test_accuracy_per_model_version_compares_the_stored_digit_with_the_label() -> None:
    records = [
        make_record(DAY, 0, model_version="2", digit=3, label=3),
        make_record(DAY, 1, model_version="2", digit=3, label=8),
        make_record(DAY, 2, model_version="10", digit=1, label=1),
        make_record(DAY, 3, model_version="2", digit=5, label=5),
        make_record(DAY, 4, model_version="10", digit=4),  # no label: not counted
    ]

    assert accuracy_by_model_version(records) == {
        "2": {"labelled": 3, "correct": 2, "accuracy": 2 / 3},
        "10": {"labelled": 1, "correct": 1, "accuracy": 1.0},
    }


def test_feedback_weighs_its_weight_while_it_is_a_small_share_of_mnist() -> None:
    mnist = np.repeat(np.arange(10, dtype=np.uint8), 6000)
    feedback = np.repeat(np.arange(10, dtype=np.uint8), 30)

    weights = feedback_weights(feedback, mnist, weight=4.0, max_share=0.02)

    np.testing.assert_allclose(weights, 4.0)


def test_a_burst_of_labels_for_one_digit_shares_that_digits_cap() -> None:
    mnist = np.repeat(np.arange(10, dtype=np.uint8), 600)
    burst = np.full(200, 1, dtype=np.uint8)  # 200 examples all claiming "1"
    feedback = np.concatenate([burst, np.array([7, 7], dtype=np.uint8)])

    weights = feedback_weights(feedback, mnist, weight=4.0, max_share=0.02)

    # The 200 weigh what 2% of MNIST's 600 ones weigh: 12 images, not 800.
    assert weights[:200].sum() == pytest.approx(12.0)
    np.testing.assert_allclose(weights[200:], 4.0)


def test_retraining_reads_what_the_gateway_stored(tmp_path: Path) -> None:
    config = Config(sqlite_path=tmp_path / "predictions.sqlite3")
    gateway_store = make_store(config)
    records = [*labelled_records(30, model_version="7"), make_record(DAY, 1)]
    gateway_store.save_many(records)
    gateway_store.close()

    reader = open_reader(config)
    try:
        feedback = read_feedback(reader, "sqlite", holdout_percent=20)
    finally:
        reader.close()

    assert feedback.labelled == 30
    assert len(feedback.holdout.labels) == sum(in_holdout(r.id, 20) for r in records[:30])
    assert feedback.snapshot == records[29].labelled_at
    assert feedback.by_model_version["7"]["labelled"] == 30
