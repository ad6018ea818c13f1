"""Where the checkout is: tests run scripts and servers from its root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
