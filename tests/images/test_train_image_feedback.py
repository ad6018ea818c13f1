"""The training image runs the retraining CronJob's command: ``python -m training --feedback``,
reading the predictions users labelled from Cassandra.

The CronJob is the chart's, rendered with helm (feedback on by default; one epoch and a low
minimum, so the run takes minutes rather than the hour of a real one). Its container's
command, arguments and environment run in the image as the chart runs them (user 10001,
read-only root, the model volume and the MNIST files mounted where the pod mounts them, a
file at /dev/termination-log), against the local Cassandra node, where the host has written
and labelled predictions as the gateway does. The local node has no authentication, so the
chart is rendered without it and the reader's login is not sent; the Cassandra addresses
are the local node's. Everything else is the chart's.

The image holds exactly its two locks (requirements/train.txt, the layer the TF Serving
stand-in's image shares, and requirements/train-feedback.txt, the Cassandra driver), and
neither Flask nor gunicorn.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from cassandra.cluster import Session
from packaging.utils import canonicalize_name

from gateway.config import Config
from gateway.predictors.saved_model import load_version
from gateway.store import make_store
from mnist_contract import METRICS_FILE, RESULT_EXPORTED, available_versions
from tests.chart.conftest import component, helm, parse, template  # noqa: F401 (fixture)
from tests.images.conftest import APP_UID, Image, owned_by_app_user
from tests.support.dependencies import (
    LIST_DISTRIBUTIONS,
    PROJECT,
    locked_versions,
    parse_listing,
    project_requirements,
    unmet_requirements,
)
from tests.support.records import make_record
from training.feedback import in_holdout

# The chart's retraining CronJob, quick: one epoch, a minimum any one-epoch run passes.
VALUES = {
    "training": {
        "cronJob": {"enabled": True},
        "epochs": 1,
        "minAccuracy": 0.9,
        "dataVolume": {"emptyDir": {}},
    },
    "cassandra": {"auth": {"enabled": False}},
}
# Labelled predictions: images version 1 read wrong, which users corrected.
LABELLED = 60


@pytest.fixture(scope="module")
def train_listing(train_image: Image) -> tuple[dict[str, str], dict[str, dict]]:
    return parse_listing(train_image.run(["python", "-c", LIST_DISTRIBUTIONS]).stdout)


def test_image_holds_exactly_its_two_locks(train_listing):
    environment, distributions = train_listing
    versions = {canonicalize_name(name): d["version"] for name, d in distributions.items()}
    assert versions.pop(PROJECT) is not None
    assert versions.pop("pip") is not None
    assert versions == locked_versions("train", environment) | locked_versions(
        "train-feedback", environment
    )
    wanted = project_requirements("train") + project_requirements("store")
    assert unmet_requirements(wanted, distributions, environment) == []
    assert not {"flask", "gunicorn", "gevent"} & set(versions)


@pytest.fixture(scope="module")
def cronjob_container(helm, tmp_path_factory) -> dict:  # noqa: F811 (fixture)
    values = tmp_path_factory.mktemp("values") / "retrain-values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    cronjob = component(
        parse(template(helm, "--values", str(values)).stdout), "CronJob", "training"
    )
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


@pytest.fixture
def keyspace(cassandra_admin: Session) -> Iterator[str]:
    name = f"test_image_retrain_{uuid.uuid4().hex[:8]}"
    yield name
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_the_cronjobs_command_retrains_on_feedback_read_from_cassandra(
    train_image,
    cronjob_container,
    cassandra_node,
    cassandra_admin,
    keyspace,
    exported_model_dir,
    mnist_data_dir,
    mnist_test_set,
    tmp_path,
):
    container = cronjob_container
    assert container["command"] == ["python", "-m", "training"]
    assert "--feedback" in container["args"]

    # Version 1 serves; users corrected LABELLED of its mistakes (every prediction keeps the
    # version that made it). The gateway's store writes them, creating the schema.
    images, labels = mnist_test_set
    _, digits = load_version(exported_model_dir, 1)(images[:3000])
    wrong = np.flatnonzero(digits != labels[:3000])[:LABELLED]
    assert len(wrong) == LABELLED
    pixels = np.rint(images[wrong, ..., 0] * 255).astype(np.uint8)
    now = datetime.now(UTC)
    records = [
        make_record(
            now,
            index,
            input_image=image.tobytes(),
            digit=int(digits[i]),
            model_version="1",
        )
        for index, (i, image) in enumerate(zip(wrong, pixels, strict=True))
    ]
    config = Config(cassandra_hosts=(cassandra_node,), cassandra_keyspace=keyspace)
    store = make_store(config)
    try:
        store.save_many(records)
        for record, i in zip(records, wrong, strict=True):
            store.set_label(record.id, int(labels[i]))
    finally:
        store.close()

    # The pod's volumes: the model volume holding version 1, the MNIST files, the
    # termination log the kubelet provides.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    models = tmp_path / "models"
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if "=" in a)
    base = models / Path(args["export-dir"]).relative_to(mounts["models"])
    shutil.copytree(exported_model_dir / "1", base / "1")
    owned_by_app_user(models)
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    owned_by_app_user(termination_log)
    (local_dc,) = [
        r.data_center for r in cassandra_admin.execute("SELECT data_center FROM system.local")
    ]

    env = {}
    for variable in container["env"]:
        assert "valueFrom" not in variable, variable  # no login without authentication
        env[variable["name"]] = variable["value"]
    assert {"CASSANDRA_HOSTS", "CASSANDRA_KEYSPACE", "MNIST_DATA_DIR"} <= set(env)
    env |= {"CASSANDRA_HOSTS": cassandra_node, "CASSANDRA_KEYSPACE": keyspace}
    env["CASSANDRA_LOCAL_DC"] = local_dc

    result = train_image.run(
        [*container["command"], *container["args"]],
        env=env,
        volumes=[
            f"{models}:{mounts['models']}",
            f"{mnist_data_dir}:{mounts['data']}:ro",
            f"{termination_log}:/dev/termination-log",
        ],
        timeout=2400,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"reading labelled predictions from cassandra keyspace {keyspace}" in output
    assert available_versions(base) == [1, 2]
    assert all(p.stat().st_uid == APP_UID for p in (base / "2").rglob("*"))
    outcome = json.loads(termination_log.read_text())
    assert (outcome["result"], outcome["version"]) == (RESULT_EXPORTED, 2)

    feedback = json.loads((base / "2" / METRICS_FILE).read_text())["feedback"]
    held = sum(in_holdout(record.id, feedback["holdout_percent"]) for record in records)
    assert feedback["source"] == f"cassandra keyspace {keyspace} on {cassandra_node}"
    assert (feedback["labelled"], feedback["holdout_examples"]) == (LABELLED, held)
    assert feedback["accuracy_by_model_version"] == {
        "1": {"labelled": LABELLED, "correct": 0, "accuracy": 0.0}
    }
    # The gate compared the new version with the serving one on the same held-out labels.
    assert feedback["compared_against"] == {"version": 1, "holdout_accuracy": 0.0}
    assert feedback["holdout_accuracy"] > 0.0
