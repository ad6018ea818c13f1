"""The images `make images` built, run with podman as the chart runs them.

Every container runs as the chart's pods do: numeric user 10001, read-only root
filesystem with only /tmp writable, every capability dropped, no privilege escalation
(podman's default seccomp profile stands for the chart's RuntimeDefault). The network is
the host's (``--network host``) so the containers reach the local Cassandra node and the
TF Serving stand-in on 127.0.0.1; every address the tests use is a loopback one.

A missing image fails the tests (``make test`` builds them through ``make images``).
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import cassandra_admin, cassandra_node  # noqa: F401 (fixtures)
from tests.support.paths import REPO_ROOT

# The storage driver and runtime this kind of machine needs (scripts/images/build.sh).
PODMAN = ("podman", "--storage-driver", "vfs", "--runtime", "runc")
# A process here may not raise its limits; podman's defaults would try to.
LIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096")
APP_UID = 10001
# The chart's containerSecurityContext (helm/mnist/templates/_helpers.tpl) and its /tmp
# emptyDir, as podman flags.
AS_THE_CHART = (
    "--user",
    f"{APP_UID}:{APP_UID}",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs",
    "/tmp:rw,size=64m,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
)


def image_tag() -> str:
    """The tag `make images` gives: ``<project version>-<git commit>`` (IMAGE_TAG wins)."""
    if os.environ.get("IMAGE_TAG"):
        return os.environ["IMAGE_TAG"]
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{version}-{commit}"


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} ... exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@dataclass(frozen=True)
class Image:
    ref: str

    def run(
        self,
        command: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
        flags: Sequence[str] = AS_THE_CHART,
        timeout: float = 600,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``command`` (the image's CMD when empty) to completion in a new container."""
        return podman(
            "run",
            "--rm",
            *LIMITS,
            *flags,
            *(f"--env={k}={v}" for k, v in (env or {}).items()),
            *(f"--volume={v}" for v in volumes),
            self.ref,
            *command,
            timeout=timeout,
            check=check,
        )

    def start(
        self, name: str, *, env: dict[str, str], volumes: Sequence[str] = ()
    ) -> subprocess.CompletedProcess:
        """Start the image's CMD detached in a container called ``name``."""
        return podman(
            "run",
            "--detach",
            "--name",
            name,
            *LIMITS,
            *AS_THE_CHART,
            *(f"--env={k}={v}" for k, v in env.items()),
            *(f"--volume={v}" for v in volumes),
            self.ref,
        )

    def size_mb(self) -> float:
        return int(podman("image", "inspect", "--format", "{{.Size}}", self.ref).stdout) / 1e6


def built_image(name: str) -> Image:
    ref = f"localhost/{name}:{image_tag()}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        pytest.fail(f"{ref} is not in podman's store: run `make images`", pytrace=False)
    return Image(ref)


@pytest.fixture(scope="session")
def gateway_image() -> Image:
    return built_image("mnist-gateway")


@pytest.fixture(scope="session")
def train_image() -> Image:
    return built_image("mnist-train")


@pytest.fixture(scope="session")
def serving_standin_image() -> Image:
    """The TF Serving stand-in (Dockerfile.serving-standin); not TF Serving itself."""
    return built_image("mnist-serving-standin")


def owned_by_app_user(path: Path) -> Path:
    """Give ``path`` to the images' user, as the chart's fsGroup gives its volumes."""
    os.chown(path, APP_UID, APP_UID)
    for child in path.rglob("*"):
        os.chown(child, APP_UID, APP_UID, follow_symlinks=False)
    return path
