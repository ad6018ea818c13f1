"""Fixtures for the whole stack on the real one-node cluster (make test-cluster NODE=real).

The node is real: containerd runs the images `make images` built (imported by
`make cluster-images`), with the chart's hardening, real probes, volumes and Services
(scripts/cluster/real_node.py). Two images are STAND-INS, named as such wherever they
appear: TF Serving's (its REST API over the same SavedModels, Dockerfile.serving-standin)
and Cassandra's (the same release from Maven Central jars on Debian's Java 17,
Dockerfile.cassandra-standin): no registry reachable here serves the official ones.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import CHART, Cluster, cluster_state_dir, connect
from tests.support.paths import REPO_ROOT

NAMESPACE = "mnist-e2e"
RELEASE = "mnist"
VALUES = REPO_ROOT / "k8s" / "real-node-values.yaml"
INSTALL_TIMEOUT = "30m"


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    found = connect()
    provider = cluster_state_dir() / "node-provider"
    if not provider.exists() or provider.read_text().strip() != "real":
        pytest.fail("the local cluster has no real node: run `make cluster-up NODE=real`")
    return found


@pytest.fixture(scope="session")
def image_tag() -> str:
    tag = os.environ.get("IMAGE_TAG")
    if not tag:
        pytest.fail("IMAGE_TAG is not set: run through `make test-cluster NODE=real`")
    return tag


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    data = os.environ.get("MNIST_DATA_DIR")
    if not data or not (Path(data) / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST_DATA_DIR={data!r} holds no MNIST files (the training Job mounts it)")
    return Path(data)


@pytest.fixture(scope="session")
def figures() -> Iterator[dict]:
    """Measured figures, written to .cache/cluster/node-figures.json for docs/benchmarks.md."""
    found: dict = {}
    yield found
    figures_file = cluster_state_dir() / "node-figures.json"
    figures_file.parent.mkdir(parents=True, exist_ok=True)
    figures_file.write_text(json.dumps(found, indent=2) + "\n")


def mnist_data_claim(cluster: Cluster, mnist_data_dir: Path) -> str:
    """A claim on a copy of the MNIST files, for training.dataVolume.

    A `restricted` namespace refuses hostPath volumes, so the files reach the training
    pod as an operator would offer them: a PersistentVolume (local, on the node) bound to
    a claim in the namespace, mounted read-only. A copy, so the kubelet's fsGroup handling
    never touches the original files.
    """
    copy = cluster_state_dir() / "mnist-data"
    copy.mkdir(parents=True, exist_ok=True)
    for source in mnist_data_dir.glob("*-ubyte.gz"):
        shutil.copyfile(source, copy / source.name)
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{NAMESPACE}-mnist-data"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": NAMESPACE, "name": "mnist-data"},
            "local": {"path": str(copy)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": ["mnist-node"],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "mnist-data", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": volume["metadata"]["name"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl("delete", "pv", volume["metadata"]["name"], "--ignore-not-found")
    cluster.run_stdin("apply", "-f", "-", stdin=json.dumps(volume))
    cluster.run_stdin("apply", "-f", "-", stdin=json.dumps(claim))
    return "mnist-data"


def helm_args(image_tag: str, claim: str) -> list[str]:
    """Everything the install adds to k8s/real-node-values.yaml: tags, data, passwords."""
    data_volume = {"persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    args = ["-f", str(VALUES), "--set-json", f"training.dataVolume={json.dumps(data_volume)}"]
    for image in ("gateway", "train", "serving", "cassandra"):
        args += ["--set", f"images.{image}.tag={image_tag}"]
    for key in ("password", "adminPassword"):
        args += ["--set", f"cassandra.auth.{key}={secrets.token_hex(12)}"]
    return args


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, image_tag: str, mnist_data_dir: Path, figures: dict
) -> Iterator[dict]:
    """The chart installed once (helm install --wait --wait-for-jobs) for the module."""
    cluster.delete_namespace(NAMESPACE)
    cluster.create_namespace(NAMESPACE)
    claim = mnist_data_claim(cluster, mnist_data_dir)
    started = time.monotonic()
    cluster.helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--wait-for-jobs",
        "--timeout", INSTALL_TIMEOUT, *helm_args(image_tag, claim),
    )  # fmt: skip
    yield {"installed_at": started, "install_seconds": time.monotonic() - started}
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    cluster.delete_namespace(NAMESPACE)
    cluster.kubectl("delete", "pv", f"{NAMESPACE}-mnist-data", "--ignore-not-found")
