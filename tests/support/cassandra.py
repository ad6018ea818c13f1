"""Helpers for tests that drive the local Cassandra node launcher."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO_ROOT

NODE_SCRIPT = REPO_ROOT / "scripts" / "cassandra_node.py"
NODE_HOST = "127.0.0.1"


def run_node_script(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/cassandra_node.py <arguments>`` as `make` does, output captured."""
    return subprocess.run(
        [sys.executable, str(NODE_SCRIPT), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
