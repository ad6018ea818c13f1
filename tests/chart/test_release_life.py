"""What the chart does over a release's life that a template can show without a cluster:
the training Job's run-once guard (executed here with a stand-in for the trainer),
what helm test leaves behind, and that the generated values reference is current.
tests/cluster exercises the same on a real API server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import CHART, ROOT, by_kind, component, parse, template

CREDENTIALS = ("--set", "cassandra.auth.password=a", "--set", "cassandra.auth.adminPassword=b")


def _training_job(helm: str, *extra: str) -> dict:
    return component(parse(template(helm, *CREDENTIALS, *extra).stdout), "Job", "training")


def _run_guard(job: dict, models: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the training container's command with /models at `models` and a fake python."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    script, *args = container["args"]
    script = script.replace("/models/", f"{models}/")
    return subprocess.run(
        ["/bin/sh", "-c", script, *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A `python` that records its arguments and exits with $FAKE_EXIT (file-controlled)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    exit_file = tmp_path / "exit"
    exit_file.write_text("0")
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit "$(cat {exit_file})"\n')
    python.chmod(0o755)
    return bin_dir, tmp_path


def test_training_job_trains_once_per_configuration(helm, fake_python):
    bin_dir, tmp = fake_python
    calls, models = tmp / "calls", tmp / "models"
    models.mkdir()
    job = _training_job(helm)
    name = job["metadata"]["name"]

    first = _run_guard(job, models, bin_dir)
    assert first.returncode == 0, first.stderr
    (call,) = calls.read_text().splitlines()
    assert call.startswith("-m training --export-dir=") and "--min-accuracy=0.98" in call
    assert (models / ".trained" / name).is_file()

    # The same Job again (a rollback recreates it): no training run.
    again = _run_guard(job, models, bin_dir)
    assert again.returncode == 0 and "has trained already" in again.stdout
    assert len(calls.read_text().splitlines()) == 1

    # Another configuration is another Job, and trains.
    other = _training_job(helm, "--set", "training.generation=2")
    assert other["metadata"]["name"] != name
    assert _run_guard(other, models, bin_dir).returncode == 0
    assert len(calls.read_text().splitlines()) == 2


def test_a_failed_training_run_leaves_no_marker(helm, fake_python):
    bin_dir, tmp = fake_python
    (tmp / "exit").write_text("3")
    models = tmp / "models"
    models.mkdir()
    job = _training_job(helm)
    failed = _run_guard(job, models, bin_dir)
    assert failed.returncode == 3
    assert not (models / ".trained").exists()
    # So the Job's retry trains again.
    (tmp / "exit").write_text("0")
    assert _run_guard(job, models, bin_dir).returncode == 0
    assert len((tmp / "calls").read_text().splitlines()) == 2


def test_scheduled_retraining_always_trains(helm):
    objects = parse(template(helm, *CREDENTIALS, "--set", "training.cronJob.enabled=true").stdout)
    (cron,) = by_kind(objects, "CronJob")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "training"]


def test_helm_test_objects_are_deleted_after_a_passing_run(helm):
    objects = parse(template(helm, *CREDENTIALS).stdout)
    hooks = [
        o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    assert {o["kind"] for o in hooks} == {"Pod", "ConfigMap", "NetworkPolicy"}
    for obj in hooks:
        policy = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
        assert set(policy) == {"before-hook-creation", "hook-succeeded"}, obj["metadata"]["name"]


def test_chart_readme_is_current():
    helm_docs = os.environ.get("HELM_DOCS")
    if not helm_docs or not os.access(helm_docs, os.X_OK):
        pytest.fail(
            f"HELM_DOCS is {helm_docs!r}, not an executable. Run the tests through `make test` "
            "(it builds helm-docs with scripts/install_helm_docs.sh and exports HELM_DOCS).",
            pytrace=False,
        )
    result = subprocess.run(
        [
            helm_docs,
            "--chart-search-root",
            str(CHART.parent),
            "--dry-run",
            "--log-level",
            "warning",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    readme = (CHART / "README.md").read_text()
    assert "| cassandra.persistence.size |" in readme
    assert result.stdout == readme, "helm/mnist/README.md is stale: run `make manifests`"
