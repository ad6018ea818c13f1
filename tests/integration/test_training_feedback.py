"""``python -m training --feedback``: training on what users labelled, and the gate.

Feedback is written to a real SQLite store the way the gateway writes it; training reads it
through the gateway's configuration (SQLITE_PATH), trains for real on a small MNIST subset,
and exports, or refuses and says why. The same command reads the real Cassandra node through
CASSANDRA_*, as the retraining CronJob does.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cassandra.cluster import Session

from gateway.config import Config
from gateway.store import make_store
from gateway.store.schema import keyspace_name
from mnist_contract import METRICS_FILE, version_numbers
from tests.support.models import install_version
from tests.support.paths import REPO_ROOT
from tests.support.records import make_record
from training import cli
from training.data import Split, load_mnist
from training.feedback import in_holdout, open_configured_store, read_feedback

DAY = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The SQLite file the gateway's configuration names for this test."""
    path = tmp_path / "predictions.sqlite3"
    monkeypatch.delenv("CASSANDRA_HOSTS", raising=False)
    monkeypatch.setenv("SQLITE_PATH", str(path))
    return path


@pytest.fixture(scope="module")
def mnist(mnist_data_dir: Path):
    return load_mnist(mnist_data_dir)


def store_feedback(
    path: Path, split: Split, labels: np.ndarray, *, model_version: str = "1", digits=None
) -> list:
    """Save ``split``'s images as labelled predictions (as the gateway plus feedback would)."""
    images = np.rint(split.images[..., 0] * 255).astype(np.uint8)
    records = [
        make_record(
            DAY + timedelta(seconds=index),
            0,
            input_image=image.tobytes(),
            digit=int(label if digits is None else digits[index]),
            model_version=model_version,
            label=int(label),
            labelled_at=DAY + timedelta(hours=2, seconds=index),
        )
        for index, (image, label) in enumerate(zip(images, labels, strict=True))
    ]
    store = make_store(Config(sqlite_path=path))
    try:
        store.save_many(records)
    finally:
        store.close()
    return records


def quick_mode(monkeypatch: pytest.MonkeyPatch, train: int, test: int) -> None:
    monkeypatch.setattr(cli, "QUICK_TRAIN_EXAMPLES", train)
    monkeypatch.setattr(cli, "QUICK_TEST_EXAMPLES", test)


def run(export_dir: Path, mnist_data_dir: Path, *args: str) -> int:
    return cli.main(
        ["--export-dir", str(export_dir), "--data-dir", str(mnist_data_dir), "--quick", *args]
    )


def test_metrics_record_the_feedback_a_version_was_trained_on(
    tmp_path, mnist, mnist_data_dir, store_path, monkeypatch
):
    quick_mode(monkeypatch, train=256, test=200)
    source = Split(mnist.test.images[5000:5060], mnist.test.labels[5000:5060])
    wrong_first = np.where(np.arange(60) < 20, (source.labels + 1) % 10, source.labels)
    records = store_feedback(store_path, source, source.labels, digits=wrong_first)
    records += store_feedback(
        store_path,
        Split(mnist.test.images[6000:6010], mnist.test.labels[6000:6010]),
        mnist.test.labels[6000:6010],
        model_version="2",
    )
    export_dir = tmp_path / "models"

    code = run(export_dir, mnist_data_dir, "--epochs", "1", "--seed", "5", "--feedback")

    assert code == 0
    metrics = json.loads((export_dir / "1" / METRICS_FILE).read_text())
    feedback = metrics["feedback"]
    held = sum(in_holdout(record.id, 20) for record in records)
    assert feedback["source"] == f"sqlite {store_path}"
    assert feedback["labelled"] == 70
    assert feedback["holdout_percent"] == 20
    assert feedback["holdout_examples"] == held
    assert feedback["train_examples"] == 70 - held
    assert metrics["train_examples_by_source"] == {
        "mnist": 256,
        "feedback": feedback["train_examples"],
    }
    assert metrics["train_examples"] == 256 + feedback["train_examples"]
    assert datetime.fromisoformat(feedback["snapshot"]) == DAY + timedelta(hours=2, seconds=59)
    assert 0.0 <= feedback["holdout_accuracy"] <= 1.0
    assert feedback["compared_against"] is None  # the first version has nothing to beat
    assert feedback["accuracy_by_model_version"] == {
        "1": {"labelled": 60, "correct": 40, "accuracy": 40 / 60},
        "2": {"labelled": 10, "correct": 10, "accuracy": 1.0},
    }
    assert 0 < feedback["train_weight_total"] <= 4.0 * feedback["train_examples"]


def test_a_version_that_reads_the_holdout_worse_is_not_exported_and_says_why(
    tmp_path, mnist, mnist_data_dir, exported_model_dir, store_path, monkeypatch, caplog
):
    # Serving: the test run's shared model (thousands of images, two epochs). The new run: one
    # epoch on 256 images, far worse on the same held-out feedback.
    export_dir = tmp_path / "models"
    install_version(exported_model_dir / "1", export_dir, 1)
    source = Split(mnist.test.images[7000:7200], mnist.test.labels[7000:7200])
    store_feedback(store_path, source, source.labels)
    quick_mode(monkeypatch, train=256, test=200)

    with caplog.at_level(logging.INFO, logger="training"):
        code = run(
            export_dir,
            mnist_data_dir,
            "--epochs",
            "1",
            "--seed",
            "5",
            "--feedback",
            "--holdout-percent",
            "50",
        )

    assert code == cli.EXIT_FEEDBACK_REGRESSION == 4
    assert version_numbers(export_dir) == [1]
    refusal = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusal) == 1
    assert "feedback holdout accuracy" in refusal[0]
    assert "is below version 1's" in refusal[0]
    assert refusal[0].endswith("examples: nothing exported")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("weighting", "exported"),
    [
        ([], True),  # the default cap: 2% of MNIST's ones
        (["--feedback-max-share", "100", "--feedback-weight", "20"], False),  # no cap
    ],
    ids=["capped", "uncapped"],
)
def test_a_burst_of_200_mislabels_cannot_pull_mnist_under_the_minimum(
    tmp_path, mnist, mnist_data_dir, store_path, monkeypatch, caplog, weighting, exported
):
    # 200 training digits that are not ones, all labelled "1": a deliberate burst on one
    # class. MNIST's first 3,000 images are the run's own training set; these come after.
    not_ones = np.flatnonzero(mnist.train.labels[10_000:] != 1)[:200] + 10_000
    burst = Split(mnist.train.images[not_ones], mnist.train.labels[not_ones])
    store_feedback(store_path, burst, np.ones(200, dtype=np.uint8))
    quick_mode(monkeypatch, train=3000, test=1000)
    export_dir = tmp_path / "models"
    minimum = "0.85"

    with caplog.at_level(logging.INFO, logger="training"):
        code = run(
            export_dir,
            mnist_data_dir,
            "--epochs",
            "2",
            "--seed",
            "7",
            "--feedback",
            "--min-accuracy",
            minimum,
            *weighting,
        )

    if exported:
        assert code == 0
        metrics = json.loads((export_dir / "1" / METRICS_FILE).read_text())
        assert metrics["test_accuracy"] >= float(minimum)
        # 2% of the ~340 ones among the first 3,000 images: all 160 mislabels weigh ~7.
        ones = int(np.sum(mnist.train.labels[:3000] == 1))
        assert metrics["feedback"]["train_weight_total"] == pytest.approx(0.02 * ones, abs=0.01)
    else:
        assert code == cli.EXIT_BELOW_MIN_ACCURACY
        assert version_numbers(export_dir) == []
        assert f"below --min-accuracy {float(minimum):.4f}: nothing exported" in caplog.text


@pytest.mark.cassandra
def test_feedback_is_read_from_cassandra_with_the_gateways_settings(
    cassandra_config, mnist, monkeypatch
):
    # The gateway writes (and creates the schema); retraining reads with the same settings,
    # from the environment, without creating anything.
    split = Split(mnist.test.images[:30], mnist.test.labels[:30])
    images = np.rint(split.images[..., 0] * 255).astype(np.uint8)
    records = [
        make_record(DAY + timedelta(days=index % 3, seconds=index), 0, input_image=image.tobytes())
        for index, image in enumerate(images)
    ]
    gateway_store = make_store(cassandra_config)
    try:
        gateway_store.save_many(records[:10])
        gateway_store.save_many(records[10:20])
        gateway_store.save_many(records[20:])
        for record, label in zip(records[:25], split.labels[:25], strict=True):
            gateway_store.set_label(record.id, int(label))
    finally:
        gateway_store.close()
    monkeypatch.setenv("CASSANDRA_HOSTS", ",".join(cassandra_config.cassandra_hosts))
    monkeypatch.setenv("CASSANDRA_KEYSPACE", cassandra_config.cassandra_keyspace)

    store, source = open_configured_store()
    try:
        feedback = read_feedback(store, source, holdout_percent=20)
    finally:
        store.close()

    assert source == f"cassandra keyspace {cassandra_config.cassandra_keyspace} on 127.0.0.1"
    assert feedback.labelled == 25
    held = [r for r in records[:25] if in_holdout(r.id, 20)]
    assert len(feedback.holdout.labels) == len(held)
    expected_train = sorted(
        (r.id.bytes, int(label))
        for r, label in zip(records[:25], split.labels[:25], strict=True)
        if not in_holdout(r.id, 20)
    )
    assert feedback.train.labels.tolist() == [label for _, label in expected_train]
    assert feedback.snapshot is not None


@pytest.fixture
def feedback_keyspace(cassandra_node: str, cassandra_admin: Session) -> Iterator[Config]:
    """A keyspace of this test's own on the local node: it counts every labelled row."""
    config = Config(
        cassandra_hosts=(cassandra_node,), cassandra_keyspace=f"test_fb_{uuid.uuid4().hex[:12]}"
    )
    yield config
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace_name(config)}")


@pytest.mark.cassandra
@pytest.mark.slow
def test_python_m_training_feedback_trains_on_the_rows_labelled_in_cassandra(
    feedback_keyspace, mnist, mnist_data_dir, tmp_path
):
    # The gateway writes 40 predictions of two versions and users label 30 of them; the command
    # the CronJob runs reads them with the gateway's CASSANDRA_* settings, in a process of its
    # own (no SQLITE_PATH, nothing of the test's configuration).
    split = Split(mnist.test.images[100:140], mnist.test.labels[100:140])
    images = np.rint(split.images[..., 0] * 255).astype(np.uint8)
    labels = split.labels.astype(int)
    digits = np.where(np.arange(40) % 4 == 0, (labels + 1) % 10, labels)  # every 4th wrong
    records = [
        make_record(
            DAY + timedelta(days=index % 2, seconds=index),
            0,
            input_image=image.tobytes(),
            digit=int(digits[index]),
            model_version="1" if index < 20 else "2",
        )
        for index, image in enumerate(images)
    ]
    gateway_store = make_store(feedback_keyspace)
    try:
        gateway_store.save_many(records)
        for record, label in zip(records[:30], labels[:30], strict=True):
            gateway_store.set_label(record.id, int(label))
    finally:
        gateway_store.close()
    export_dir, result_file = tmp_path / "models", tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASSANDRA_", "SQLITE_"))}
    env |= {
        "CASSANDRA_HOSTS": ",".join(feedback_keyspace.cassandra_hosts),
        "CASSANDRA_KEYSPACE": feedback_keyspace.cassandra_keyspace,
    }

    run = subprocess.run(
        [
            sys.executable, "-m", "training", "--export-dir", str(export_dir),
            "--data-dir", str(mnist_data_dir), "--quick", "--epochs", "1", "--seed", "3",
            "--feedback", "--holdout-percent", "25", "--result-file", str(result_file),
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr[-4000:]
    keyspace = feedback_keyspace.cassandra_keyspace
    assert f"reading labelled predictions from cassandra keyspace {keyspace} on 127.0.0.1" in (
        run.stderr
    )
    assert json.loads(result_file.read_text())["version"] == 1
    metrics = json.loads((export_dir / "1" / METRICS_FILE).read_text())
    feedback = metrics["feedback"]
    held = sum(in_holdout(record.id, 25) for record in records[:30])
    assert feedback["source"] == f"cassandra keyspace {keyspace} on 127.0.0.1"
    assert feedback["labelled"] == 30
    assert (feedback["train_examples"], feedback["holdout_examples"]) == (30 - held, held)
    assert metrics["train_examples_by_source"]["feedback"] == 30 - held
    assert datetime.fromisoformat(feedback["snapshot"]) > DAY
    correct = digits[:30] == labels[:30]
    assert feedback["accuracy_by_model_version"] == {
        "1": {"labelled": 20, "correct": int(correct[:20].sum()), "accuracy": correct[:20].mean()},
        "2": {"labelled": 10, "correct": int(correct[20:].sum()), "accuracy": correct[20:].mean()},
    }
