"""values.yaml documents every setting, and values.schema.json declares every one."""

from __future__ import annotations

import json
import re

import yaml

from tests.chart.conftest import CHART

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w-]*):")
# Kubernetes types taken verbatim (documented by Kubernetes): their inner keys
# are data, not chart settings.
OPAQUE = {"resources", "initResources"}


def declared(schema: dict, path: tuple[str, ...]) -> bool:
    """Whether the schema names this key explicitly (not free-form data)."""
    if any(part in OPAQUE for part in path[:-1]):
        return False
    node = schema
    for part in path:
        properties = node.get("properties", {})
        if part not in properties:
            return False
        node = properties[part]
    return True


def test_every_setting_has_a_comment():
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented = []
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        path = tuple(key for _, key in stack)
        if not declared(schema, path):
            continue
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#"):
            undocumented.append(".".join(path))
    assert not undocumented, f"keys without a comment above them: {undocumented}"


def test_every_value_is_declared_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, value: object, path: str) -> list[str]:
        if not isinstance(value, dict) or "properties" not in node:
            return []
        assert node.get("additionalProperties") is False, f"{path or '<root>'} is open"
        missing = []
        for key, child in value.items():
            if key not in node["properties"]:
                missing.append(f"{path}{key}")
            else:
                missing += walk(node["properties"][key], child, f"{path}{key}.")
        return missing

    assert walk(schema, values, "") == []
