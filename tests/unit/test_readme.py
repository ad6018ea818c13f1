"""The README and docs/ document what users configure and run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gateway.config import ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_gateway_variable_is_in_the_configuration_table():
    # docs/configuration.md holds the table; the README points there.
    table = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name in ENV_NAMES if f"`{name}`" not in table]
    assert missing == []


def test_readme_opens_with_the_two_commands():
    opening = README.split("## ", 1)[0]
    assert "make run" in opening
    assert "make test" in opening


def test_readme_is_what_a_newcomer_reads_in_minutes():
    assert len(README.splitlines()) <= 250


def test_no_tracked_file_reads_like_a_development_diary():
    # History lives in git log, not in the files: no numbered or "current" work periods.
    diary = re.compile(r"\b(this|last|next|earlier|until) session\b|\bsessions? \d", re.I)
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    hits = []
    for name in filter(None, files):
        path = ROOT / name
        if path.suffix in {".png", ".gz", ".lock"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        hits += [f"{name}: {m.group(0)}" for m in diary.finditer(text)]
    assert hits == []
