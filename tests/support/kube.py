"""A Kubernetes cluster as the tests see it: kubectl and helm against the local
cluster of scripts/cluster/cluster.py (``make cluster-up``, kwok or ``NODE=real``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

CHART = REPO_ROOT / "helm" / "mnist"
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster" / "cluster.py"
DELETE_TIMEOUT_SECONDS = 120.0
HELM_TIMEOUT = "180s"


def cluster_state_dir() -> Path:
    """Where scripts/cluster/cluster.py keeps the running cluster ($STATE_DIR/cluster)."""
    state = Path(os.environ.get("STATE_DIR") or ".cache")
    return (state if state.is_absolute() else REPO_ROOT / state) / "cluster"


@dataclass(frozen=True)
class Cluster:
    kubectl_path: str
    helm_path: str
    kubeconfig: Path

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = self.kubectl_path if tool == "kubectl" else self.helm_path
        result = subprocess.run(
            [binary, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
        return result

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def get(self, namespace: str, kind: str, name: str) -> dict:
        return json.loads(self.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)

    def items(self, namespace: str, kind: str, selector: str | None = None) -> list[dict]:
        args = ["-n", namespace, "get", kind, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)["items"]

    def exists(self, namespace: str, kind: str, name: str) -> bool:
        result = self.kubectl("-n", namespace, "get", kind, name, "-o", "name", check=False)
        return result.returncode == 0

    def create_namespace(self, name: str) -> None:
        """A namespace that enforces the PodSecurity `restricted` profile."""
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    f"pod-security.kubernetes.io/{mode}": "restricted"
                    for mode in ("enforce", "warn", "audit")
                }
                | {"pod-security.kubernetes.io/enforce-version": "latest"},
            },
        }
        self.run_stdin("apply", "-f", "-", stdin=json.dumps(manifest))

    def run_stdin(self, *args: str, stdin: str) -> str:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
        return result.stdout

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace and wait until it is gone, then offer its volumes again."""
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
        deadline = time.monotonic() + DELETE_TIMEOUT_SECONDS
        while self.kubectl("get", "namespace", name, "-o", "name", check=False).returncode == 0:
            if time.monotonic() > deadline:
                pytest.fail(f"namespace {name} still exists after {DELETE_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.5)
        recycle_volumes()


def recycle_volumes() -> None:
    result = subprocess.run(
        [sys.executable, str(CLUSTER_SCRIPT), "volumes"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cluster.py volumes failed:\n{result.stderr}", pytrace=False)


def _executable(variable: str, hint: str) -> str:
    path = os.environ.get(variable)
    if not path or not Path(path).is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"{variable} is {path!r}, not an executable. {hint}", pytrace=False)
    return path


def connect() -> Cluster:
    """The running local cluster; fails (never skips) when it does not answer."""
    hint = (
        "Run these tests through `make test` or `make test-cluster` (they build it and export it)."
    )
    kubeconfig = cluster_state_dir() / "kubeconfig"
    found = Cluster(
        kubectl_path=_executable("KUBECTL", hint),
        helm_path=_executable("HELM", hint),
        kubeconfig=kubeconfig,
    )
    if not kubeconfig.exists():
        pytest.fail(f"{kubeconfig} does not exist: start the cluster with `make cluster-up`")
    ready = found.kubectl("get", "--raw", "/readyz", check=False)
    if ready.returncode != 0 or ready.stdout.strip() != "ok":
        pytest.fail(f"the API server does not answer /readyz: {ready.stderr}", pytrace=False)
    return found
