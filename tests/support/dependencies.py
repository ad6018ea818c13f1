"""What an environment (the venv, an image) holds, compared with pyproject.toml and the
lock files under requirements/.

An image lists its installed distributions (name, version, requirements) with the
standard library only, so the listing works even when a dependency is missing from it;
the comparison runs here, with ``packaging``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import REPO_ROOT

PROJECT = "mnist-serving"

# Run with the image's python: its environment markers and every installed distribution.
LIST_DISTRIBUTIONS = """
import json, os, platform, sys
from importlib import metadata
print(json.dumps({
    "environment": {
        "python_version": "%d.%d" % sys.version_info[:2],
        "python_full_version": platform.python_version(),
        "sys_platform": sys.platform,
        "platform_system": platform.system(),
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "implementation_name": sys.implementation.name,
        "os_name": os.name,
    },
    "distributions": {
        d.metadata["Name"]: {"version": d.version, "requires": d.requires or []}
        for d in metadata.distributions()
    },
}))
"""


def project_requirements(extra: str) -> list[Requirement]:
    """The project's own dependencies plus those of ``extra`` (nested extras expanded)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    pending, seen = [extra], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in extras[name]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def applies(requirement: Requirement, environment: dict[str, str], extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in {"", *extras}
    )


def unmet_requirements(
    roots: list[Requirement], distributions: dict[str, dict], environment: dict[str, str]
) -> list[str]:
    """Every requirement reachable from ``roots`` that the distributions do not satisfy,
    following each distribution's own requirements with the extras asked of it."""
    installed = {canonicalize_name(name): info for name, info in distributions.items()}
    problems = []
    pending = [(r, "pyproject.toml") for r in roots]
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, wanted_by = pending.pop()
        if not applies(requirement, environment, ()):
            continue
        name = canonicalize_name(requirement.name)
        info = installed.get(name)
        if info is None:
            problems.append(f"{requirement} (wanted by {wanted_by}) is not installed")
            continue
        if not requirement.specifier.contains(info["version"], prereleases=True):
            problems.append(f"{requirement} (wanted by {wanted_by}): {name} {info['version']}")
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)
        for text in info["requires"]:
            child = Requirement(text)
            if applies(child, environment, requirement.extras):
                # The child's marker was for the parent's extras: drop it for the walk.
                child.marker = None
                pending.append((child, f"{name}[{','.join(sorted(requirement.extras))}]"))
    return sorted(problems)


def read_lock(name: str) -> dict[str, list[tuple[str, Marker | None]]]:
    """``requirements/<name>.txt`` as {name: [(version, marker)]}: a name has several
    entries when the lock pins it differently per Python range."""
    entries: dict[str, list[tuple[str, Marker | None]]] = {}
    for line in (REPO_ROOT / "requirements" / f"{name}.txt").read_text().splitlines():
        line = line.strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "--")):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}.txt: {line} is not an exact pin"
        entries.setdefault(canonicalize_name(requirement.name), []).append(
            (spec.version, requirement.marker)
        )
    return entries


def locked_versions(name: str, environment: dict[str, str]) -> dict[str, str]:
    """The pins of ``requirements/<name>.txt`` that apply in ``environment``."""
    return {
        package: version
        for package, entries in read_lock(name).items()
        for version, marker in entries
        if marker is None or marker.evaluate(environment)
    }


def parse_listing(stdout: str) -> tuple[dict[str, str], dict[str, dict]]:
    listing = json.loads(stdout)
    return listing["environment"], listing["distributions"]
