"""The README documents what users configure and run."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ENV_NAMES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_gateway_variable_is_in_the_configuration_table():
    table = README.split("## Gateway configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in ENV_NAMES if f"`{name}`" not in table]
    assert missing == []


def test_readme_opens_with_the_two_commands():
    opening = README.split("## ", 1)[0]
    assert "make run" in opening
    assert "make test" in opening
