"""skaffold.yaml is valid for skaffold/v4beta13 and points at things that exist."""

from __future__ import annotations

import json
import re
import tomllib

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, ROOT

SCHEMA = ROOT.parent / "shared" / "schemas" / "skaffold-v4beta13.json"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def test_matches_the_v4beta13_schema(config):
    if not SCHEMA.is_file():
        pytest.fail(f"{SCHEMA} is missing: the shared skaffold schema must be beside the repo")
    schema = json.loads(SCHEMA.read_text())
    assert config["apiVersion"] == "skaffold/v4beta13"
    jsonschema.Draft7Validator(schema).validate(config)
    for profile in config["profiles"]:
        # Profiles are validated too once applied: their JSON patches must land.
        assert all(p["path"].startswith("/deploy/helm/releases/0/") for p in profile["patches"])


def test_builds_both_images_from_their_dockerfiles(config):
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in config["build"]["artifacts"]}
    assert artifacts == {"mnist-gateway": "Dockerfile.gateway", "mnist-train": "Dockerfile.train"}
    for dockerfile in artifacts.values():
        assert (ROOT / dockerfile).is_file()


def has_value(values: dict, dotted: str) -> bool:
    node: object = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_deploys_the_chart_with_the_built_images(config):
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    for values_file in release["valuesFiles"]:
        assert (ROOT / values_file).is_file()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = release["setValueTemplates"]
    for profile in config["profiles"]:
        for patch in profile["patches"]:
            if patch["path"].startswith("/deploy/helm/releases/0/setValueTemplates/"):
                templates[patch["path"].rsplit("/", 1)[1]] = patch["value"]
            elif patch["path"] == "/deploy/helm/releases/0/setValues":
                templates.update(patch["value"])
            else:
                assert all((ROOT / f).is_file() for f in patch["value"])
    for key, value in templates.items():
        assert has_value(values, key), f"{key} is not a chart value"
        image = re.fullmatch(r"\{\{\.IMAGE_(?:REPO|TAG|DIGEST)_(\w+)\}\}", value)
        if image:
            assert image[1] in {"mnist_gateway", "mnist_train"}, value


def build_configs(config: dict) -> list[dict]:
    """The build section and every profile's own build section."""
    return [config["build"], *(p["build"] for p in config["profiles"] if "build" in p)]


def test_builds_as_make_images_does(config):
    """The same base argument, build secrets and tags as `make images`
    (scripts/images/build.sh, the Dockerfiles' secret mounts, the Makefile's IMAGE_TAG)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for build in build_configs(config):
        assert build["tagPolicy"] == {
            "gitCommit": {
                "variant": "AbbrevCommitSha",
                "prefix": f"{version}-",
                "ignoreChanges": True,
            }
        }
        for artifact in build["artifacts"]:
            docker = artifact["docker"]
            dockerfile = (ROOT / docker["dockerfile"]).read_text()
            default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)[1]
            assert docker["buildArgs"] == {
                "PYTHON_IMAGE": f'{{{{ default "{default}" .PYTHON_IMAGE }}}}'
            }
            mounted = set(re.findall(r"--mount=type=secret,id=([\w.-]+)", dockerfile))
            assert {s["id"] for s in docker["secrets"]} == mounted == {"pip.conf", "pip-ca.crt"}
            for secret in docker["secrets"]:
                assert secret["src"] == f".cache/images/secrets/{secret['id']}"
    makefile = (ROOT / "Makefile").read_text()
    assert "git rev-parse --short HEAD" in makefile
    assert "pip_secrets.py $(STATE_DIR)/images/secrets" in makefile
