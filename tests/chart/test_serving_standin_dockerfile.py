"""Static checks of Dockerfile.serving-standin, the TF Serving STAND-IN image: the rules every
Dockerfile here keeps (tests/chart/test_dockerfiles.py), and the stages it shares with
Dockerfile.train, which is what lets both images share the TensorFlow layer."""

from __future__ import annotations

import json

from tests.chart import test_dockerfiles as rules

NAME = "Dockerfile.serving-standin"


def stages(name: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions by stage (the ARGs before the first FROM under ""; the last stage,
    unnamed, under "runtime")."""
    found: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for word, rest in rules.instructions(name):
        if word == "FROM":
            _, _, alias = rest.partition(" AS ")
            current = alias.strip() or "runtime"
            found[current] = []
        found[current].append((word, rest))
    return found


def test_it_keeps_the_rules_of_every_dockerfile():
    rules.test_base_images_are_pinned(NAME)
    rules.test_runs_as_a_numeric_non_root_user(NAME)
    rules.test_cmd_and_entrypoint_use_the_exec_form(NAME)
    rules.test_copy_sources_exist_and_are_in_the_build_context(NAME)


def test_it_runs_as_the_charts_user_and_is_named_a_stand_in():
    steps = rules.instructions(NAME)
    assert [rest for word, rest in steps if word == "USER"] == ["10001:10001"]
    (cmd,) = [json.loads(rest) for word, rest in steps if word == "CMD"]
    # The command the chart's serving Deployment runs (helm/mnist/templates/serving).
    assert cmd[0] == "/usr/bin/tensorflow_model_server"
    header = (rules.ROOT / NAME).read_text().splitlines()[1]
    assert "STAND-IN" in header and "NOT TF Serving" in header


def test_the_tensorflow_stages_are_the_training_images():
    """The base argument, the deps stage and the runtime stage up to its venv are
    Dockerfile.train's, instruction for instruction: the build cache and the image store
    keep one TensorFlow layer for both images."""
    standin, train = stages(NAME), stages("Dockerfile.train")
    assert standin[""] == train[""]
    assert standin["deps"] == train["deps"]
    runtime = standin["runtime"]
    shared = runtime[: runtime.index(("COPY", "--from=deps /opt/venv /opt/venv")) + 1]
    assert shared == train["runtime"][: len(shared)]
    # After that, one COPY: the stand-in's code and command in a single layer.
    assert [w for w, _ in runtime[len(shared) :]].count("COPY") == 1
