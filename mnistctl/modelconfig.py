"""TF Serving's model config file as the chart renders it, and pinning one version in it.

How a pin coexists with Helm, which owns the serving configuration: the chart renders the
ConfigMap with two keys, ``models.config`` (the file TF Serving reads) and
``release.config`` (what the release's ``serving.versionPolicy`` asks for). ``mnistctl pin
N`` writes ``models.config`` with ``specific { versions: N }`` and records N in the
annotation ``mnist-serving.local/pinned-version``; the chart looks that annotation up on
every ``helm upgrade`` and renders the same pinned file, so an upgrade that does not touch
the pin leaves it, byte for byte. ``mnistctl unpin`` copies ``release.config`` back and
drops the annotation. The pinned text below must equal the chart's rendering of
``versionPolicy: {type: specific, versions: [N]}`` (tests/chart/test_mnistctl_chart.py).
"""

from __future__ import annotations

import re
from typing import Any

CONFIG_KEY = "models.config"
RELEASE_KEY = "release.config"
PIN_ANNOTATION = "mnist-serving.local/pinned-version"

_POLICY_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<policy>latest \{[^}\n]*\}|specific \{[^}\n]*\}|all \{\s*\})[ \t]*$",
    re.M,
)
_LABEL_LINE = re.compile(
    r'^[ \t]*version_labels \{ key: "(?P<key>[^"]*)" value: (?P<value>\d+) \}[ \t]*\n', re.M
)
_BASE_PATH = re.compile(r'^\s*base_path: "(?P<path>[^"]*)"', re.M)
_NAME = re.compile(r'^\s*name: "(?P<name>[^"]*)"', re.M)


class ModelConfigError(ValueError):
    """The text is not a model config file as the chart renders it."""


def parse(text: str) -> dict[str, Any]:
    """The version policy of a rendered model config: ``{"type": "latest", "latest_count":
    1}``, ``{"type": "specific", "versions": [3, 4]}`` or ``{"type": "all"}``, with
    ``labels`` ({name: version}), the model's ``name`` and ``base_path``."""
    policies = list(_POLICY_LINE.finditer(text))
    if len(policies) != 1:
        raise ModelConfigError(f"expected one model_version_policy, found {len(policies)}")
    policy = policies[0]["policy"]
    result: dict[str, Any]
    if policy.startswith("latest"):
        count = re.search(r"num_versions:\s*(\d+)", policy)
        result = {"type": "latest", "latest_count": int(count[1]) if count else 1}
    elif policy.startswith("specific"):
        result = {"type": "specific", "versions": [int(v) for v in re.findall(r"\d+", policy)]}
    else:
        result = {"type": "all"}
    result["labels"] = {m["key"]: int(m["value"]) for m in _LABEL_LINE.finditer(text)}
    name, base_path = _NAME.search(text), _BASE_PATH.search(text)
    result["model"] = name["name"] if name else None
    result["base_path"] = base_path["path"] if base_path else None
    return result


def pinned(release_text: str, version: int) -> str:
    """The release's model config with its policy replaced by exactly ``version``, labels
    dropped (they may name other versions): what the chart renders for a pin."""
    if version < 1:
        raise ModelConfigError(f"a model version is a positive integer, not {version}")
    parse(release_text)  # one policy line, or refuse
    text = _POLICY_LINE.sub(
        lambda m: f"{m['indent']}specific {{ versions: {version} }}", release_text, count=1
    )
    return _LABEL_LINE.sub("", text)


def served_versions(policy: dict[str, Any], known: list[int]) -> list[int]:
    """The versions a policy serves among ``known`` (ascending): what TF Serving should load
    when exactly those versions are on the volume."""
    known = sorted(set(known))
    if policy["type"] == "latest":
        return known[-policy["latest_count"] :] if known else []
    if policy["type"] == "specific":
        return sorted(policy["versions"])
    return known


def describe(policy: dict[str, Any]) -> str:
    if policy["type"] == "latest":
        count = policy["latest_count"]
        return "latest" if count == 1 else f"latest {count}"
    if policy["type"] == "specific":
        return "versions " + ", ".join(str(v) for v in policy["versions"])
    return "all versions"
