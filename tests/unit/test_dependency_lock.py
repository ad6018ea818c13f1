"""The lock files under requirements/ are current with pyproject.toml, and TensorFlow is
the release the chart's TF Serving image runs.

Offline: the lock is checked against the distributions' own metadata in this venv, which
`make venv` installs from requirements/dev.txt. A requirement added to pyproject.toml
without `make lock`, a dependency dropped, a pin that no longer satisfies its
requirement, or a venv older than the lock all fail here.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dependencies import (
    PROJECT,
    locked_versions,
    project_requirements,
    read_lock,
    unmet_requirements,
)
from tests.support.paths import REPO_ROOT

# Lock file -> (the extras of the project it installs, or None: the build backend; the lock it
# is installed over, whose pins it leaves out).
LOCKS = {
    "dev": (("dev",), None),
    "gateway": (("gateway",), None),
    "train": (("train",), None),
    # The training image's second install: the store's client, for python -m training --feedback.
    "train-feedback": (("train", "store"), "train"),
    "build": (None, None),
}
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def installed() -> dict[str, dict]:
    return {
        d.metadata["Name"]: {"version": d.version, "requires": d.requires or []}
        for d in metadata.distributions()
    }


def roots(lock: str) -> list[Requirement]:
    extras, _ = LOCKS[lock]
    if extras is None:
        return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    return [requirement for extra in extras for requirement in project_requirements(extra)]


def closure(requirements: list[Requirement], distributions: dict[str, dict]) -> set[str]:
    """The names ``requirements`` reach through the installed distributions' metadata."""
    environment = default_environment()
    by_name = {canonicalize_name(n): info for n, info in distributions.items()}
    reached: set[tuple[str, frozenset[str]]] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": ""}):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in reached or key[0] not in by_name:
            continue
        reached.add(key)
        for text in by_name[key[0]]["requires"]:
            child = Requirement(text)
            extras = {"", *requirement.extras}
            if child.marker is None or any(
                child.marker.evaluate({**environment, "extra": e}) for e in extras
            ):
                child.marker = None
                pending.append(child)
    return {name for name, _ in reached}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_entry_is_an_exact_version_with_hashes(lock):
    text = (REPO_ROOT / "requirements" / f"{lock}.txt").read_text()
    entries = re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2].strip())
    assert entries, lock
    for entry in entries:
        if entry.startswith("#"):
            continue
        assert re.match(r"^[a-z0-9._-]+==[^\s;]+", entry), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{lock}.txt: no hash in {entry}"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_holds_what_pyproject_asks_for_and_nothing_else(lock):
    distributions = installed()
    environment = default_environment()
    pins = locked_versions(lock, environment)
    _, under = LOCKS[lock]
    if under is not None:
        below = locked_versions(under, environment)
        assert not set(pins) & set(below), (
            f"requirements/{lock}.txt pins again what {under}.txt does"
        )
        pins = below | pins
    wanted = roots(lock)

    unmet = unmet_requirements(
        wanted,
        {name: {**info, "version": pins.get(canonicalize_name(name), "0")}
         for name, info in distributions.items()
         if canonicalize_name(name) in pins},
        environment,
    )  # fmt: skip
    assert not unmet, f"requirements/{lock}.txt is stale (make lock): {unmet}"
    reached = closure(wanted, distributions)
    extra = set(pins) - reached - {canonicalize_name(PROJECT)}
    assert not extra, f"requirements/{lock}.txt pins what nothing asks for (make lock): {extra}"


def test_the_venv_is_the_dev_lock():
    pins = locked_versions("dev", default_environment()) | locked_versions(
        "build", default_environment()
    )
    versions = {canonicalize_name(n): i["version"] for n, i in installed().items()}
    differ = {n: (v, versions.get(n)) for n, v in pins.items() if versions.get(n) != v}
    assert not differ, f"the venv differs from requirements/dev.txt (make venv): {differ}"


def test_images_and_venv_share_every_version():
    dev = read_lock("dev")
    for lock in ("gateway", "train", "train-feedback", "build"):
        for name, entries in read_lock(lock).items():
            assert name in dev, f"{lock}.txt: {name} is not in dev.txt"
            assert {v for v, _ in entries} <= {v for v, _ in dev[name]}, (lock, name)


def test_the_gateway_lock_has_no_tensorflow():
    names = set(read_lock("gateway"))
    assert not {n for n in names if n.startswith(("tensorflow", "keras", "tf-"))}, names


def test_the_training_image_reads_cassandra_without_the_web_stack():
    """train.txt (the layer the TF Serving stand-in shares) and train-feedback.txt: the
    Cassandra driver for --feedback, only in the second; Flask, gunicorn and gevent in none."""
    train, feedback = set(read_lock("train")), set(read_lock("train-feedback"))
    assert "cassandra-driver" in feedback
    assert "cassandra-driver" not in train
    assert not {"flask", "gunicorn", "gevent"} & (train | feedback)


def test_gunicorn_is_asked_for_with_its_gevent_extra():
    gateway = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["gateway"]]
    (gunicorn,) = [r for r in gateway if r.name == "gunicorn"]
    assert "gevent" in gunicorn.extras
    # What gunicorn's gevent worker imports comes through the extra, so it is locked.
    assert {"gevent", "packaging"} <= set(read_lock("gateway"))


def test_tensorflow_is_the_release_tf_serving_runs():
    """One TensorFlow: the chart's TF Serving tag is the release training and the
    in-process predictor pin, the lock holds, and this venv runs."""
    values = yaml.safe_load((REPO_ROOT / "helm" / "mnist" / "values.yaml").read_text())
    serving = values["images"]["serving"]
    assert serving["repository"] == "tensorflow/serving"
    release = serving["tag"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", release), release

    extras = PYPROJECT["project"]["optional-dependencies"]
    pins = {}
    for extra in ("model", "train"):
        for requirement in map(Requirement, extras[extra]):
            if requirement.name.startswith("tensorflow"):
                pins[(extra, requirement.name)] = str(requirement.specifier)
    assert pins == {
        ("model", "tensorflow"): f"=={release}",
        ("train", "tensorflow"): f"=={release}",
        ("train", "tensorflow-serving-api"): f"=={release}",
    }
    for lock in ("dev", "train"):
        assert read_lock(lock)["tensorflow"][0][0] == release, lock
    assert metadata.version("tensorflow") == release
