"""Running Python code in a fresh interpreter: for what cannot be undone in the test
process (gevent's monkey-patching) or must start from nothing imported."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO_ROOT


def run_python(script: str, timeout: float = 60) -> str:
    """Run ``script`` with this interpreter from the repo root; its stdout (fails on error)."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
