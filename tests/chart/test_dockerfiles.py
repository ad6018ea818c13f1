"""Static checks of the two Dockerfiles (no Docker engine here to build them)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

DOCKERFILES = ("Dockerfile.gateway", "Dockerfile.train")
# An exact release, e.g. python:3.11.15-slim-bookworm; or a digest.
PINNED_BASE = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[a-f0-9]{64})?$|@sha256:")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (ROOT / name).read_text()
    logical = re.sub(r"\\\n", " ", text)
    result = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) in file order; the last matching pattern decides."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", line):
            if part.startswith("**"):
                regex += "(.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((exception, re.compile(regex)))
    return patterns


def excluded(path: str) -> bool:
    """Docker's rule: a pattern that matches a path or one of its parents applies."""
    parts = path.split("/")
    verdict = False
    for exception, pattern in dockerignore_patterns():
        prefixes = ("/".join(parts[: i + 1]) for i in range(len(parts)))
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            verdict = not exception
    return verdict


def context_files(source: str) -> list[str]:
    path = ROOT / source
    if path.is_file():
        return [source]
    return [
        str(p.relative_to(ROOT))
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name):
    steps = instructions(name)
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    stages = set()
    for word, rest in steps:
        if word != "FROM":
            continue
        image, _, alias = rest.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image.strip())
        if image not in stages:
            assert PINNED_BASE.search(image), f"{name}: FROM {image} is not pinned"
            assert "slim" in image, f"{name}: FROM {image} is not a slim base"
        stages.add(alias.strip())


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_numeric_non_root_user(name):
    users = [rest for word, rest in instructions(name) if word == "USER"]
    assert users, f"{name} has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"{name}: USER {users[-1]}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_cmd_and_entrypoint_use_the_exec_form(name):
    commands = [(w, r) for w, r in instructions(name) if w in ("CMD", "ENTRYPOINT")]
    assert commands, f"{name} has no CMD"
    for word, rest in commands:
        parsed = json.loads(rest)
        assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), word


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_in_the_build_context(name):
    for word, rest in instructions(name):
        if word not in ("COPY", "ADD"):
            continue
        assert word == "COPY", f"{name}: use COPY, not ADD"
        args = rest.split()
        if any(a.startswith("--from=") for a in args):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
            files = context_files(source)
            assert files and not any(excluded(f) for f in files), (
                f"{name}: COPY {source} is excluded by .dockerignore"
            )


def test_dockerignore_keeps_local_state_out_of_the_context():
    for path in (
        ".venv/bin/python",
        ".cache/models/mnist/1/saved_model.pb",
        "helm/mnist/values.yaml",
    ):
        assert excluded(path), path
    assert not excluded("gateway/config.py")
    assert excluded("gateway/__pycache__/config.cpython-311.pyc")


@pytest.mark.parametrize(("name", "lock"), [("gateway", "gateway"), ("train", "train")])
def test_images_install_the_lock_and_then_the_project_alone(name, lock):
    """Dependencies only from the lock (exact versions, hashes); the project on top without
    dependencies and without the index, so nothing unlocked gets in."""
    installs = [r for w, r in instructions(f"Dockerfile.{name}") if w == "RUN" and "pip " in r]
    assert len(installs) == 3, installs
    assert f"pip install --require-hashes --no-deps -r /src/requirements/{lock}.txt" in installs[0]
    assert "pip install --require-hashes --no-deps -r requirements/build.txt" in installs[1]
    # The training image's second lock (--feedback) goes in with the project, not the deps
    # stage: that stage (TensorFlow) stays Dockerfile.serving-standin's.
    feedback = (
        "pip install --require-hashes --no-deps --target /opt/project "
        "-r requirements/train-feedback.txt"
    )
    assert (feedback in " ".join(installs[1].split())) == (name == "train"), installs[1]
    assert installs[2].startswith(
        "/opt/build/bin/pip install --no-deps --no-index --no-build-isolation "
        "--target /opt/project . "
    )
    copies = [r for w, r in instructions(f"Dockerfile.{name}") if w == "COPY" and "--from" in r]
    assert copies == [
        "--from=deps /opt/venv /opt/venv",
        "--from=project /opt/project /opt/venv/lib/python3.11/site-packages/",
    ]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_copy_the_shared_contract_package(name):
    copied = [r.split()[0] for w, r in instructions(name) if w == "COPY" and "--from" not in r]
    assert "mnist_contract" in copied
    assert ("gateway" in copied) == (name == "Dockerfile.gateway")
    assert ("training" in copied) == (name == "Dockerfile.train")


def test_the_training_image_copies_the_store_reader_and_not_the_web_stack():
    """python -m training --feedback reads the store through gateway.store with gateway.config:
    those, and nothing of gateway/web, server, pipeline or predictors (Flask, gunicorn)."""
    sources = [
        source
        for word, rest in instructions("Dockerfile.train")
        if word == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
        if source.startswith("gateway")
    ]
    assert sorted(sources) == [
        "gateway/__init__.py",
        "gateway/concurrency",
        "gateway/config.py",
        "gateway/errors.py",
        "gateway/store",
    ]


def test_gateway_lock_holds_no_tensorflow():
    extras = tomllib.loads(Path(ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any(dep.lower().startswith("tensorflow") for dep in extras["gateway"])
    lock = (ROOT / "requirements" / "gateway.txt").read_text().lower()
    assert not re.search(r"^(tensorflow|keras)", lock, re.M)
