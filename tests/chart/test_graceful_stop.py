"""A stopping gateway pod loses no request: the preStop drain, gunicorn's graceful stop
and the pod's grace period agree in every scenario (the behaviour itself is tested with
real gunicorn in tests/integration/test_gunicorn_under_load.py)."""

from __future__ import annotations

import re

import pytest

from tests.chart.conftest import SCENARIOS


def gateway_objects(objects: list[dict]) -> tuple[dict, dict]:
    def component(obj: dict) -> str | None:
        return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")

    deployment = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    configmap = next(o for o in objects if o["kind"] == "ConfigMap" and component(o) == "gateway")
    return deployment, configmap


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_drain_then_graceful_stop_fit_in_the_grace_period(rendered, scenario):
    deployment, configmap = gateway_objects(rendered[scenario])
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    drain = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    arguments = configmap["data"]["GUNICORN_CMD_ARGS"]
    graceful = int(re.search(r"--graceful-timeout (\d+)", arguments).group(1))
    assert drain > 0  # endpoints are removed while the pod still serves
    assert pod["terminationGracePeriodSeconds"] > drain + graceful
