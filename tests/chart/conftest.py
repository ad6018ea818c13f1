"""Fixtures for the delivery checks: the Helm binary and the chart rendered per CI scenario.

Nothing here needs a cluster. A missing Helm binary or shared schema fails the run,
never skips it: these checks are part of `make test`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mnist"
SCENARIOS = sorted(p.stem.removesuffix("-values") for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "ci"
NAMESPACE = "mnist-ci"
POD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")


def values_file(scenario: str) -> Path:
    return CHART / "ci" / f"{scenario}-values.yaml"


@pytest.fixture(scope="session")
def helm() -> str:
    path = os.environ.get("HELM")
    if not path or not Path(path).is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"HELM is {path!r}, not an executable Helm binary. Run the tests through "
            "`make test` (it builds Helm with scripts/install_helm.sh and exports HELM).",
            pytrace=False,
        )
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result


def template(helm: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra, check=check
    )


def parse(manifest: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[dict]]:
    """Every CI scenario rendered once: {scenario: [objects]}."""
    return {s: parse(template(helm, "--values", str(values_file(s))).stdout) for s in SCENARIOS}


def pod_specs(objects: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(owning object, pod spec) for everything that runs pods."""
    for obj in objects:
        kind = obj["kind"]
        if kind == "Pod":
            yield obj, obj["spec"]
        elif kind == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind in POD_KINDS:
            yield obj, obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"]["labels"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def component(objects: list[dict], kind: str, name: str) -> dict:
    """The one object of a kind whose app.kubernetes.io/component label is name."""
    matches = [
        o
        for o in by_kind(objects, kind)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]
    assert len(matches) == 1, f"expected one {kind} of component {name}, found {len(matches)}"
    return matches[0]
