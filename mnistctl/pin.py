"""``mnistctl pin N`` / ``mnistctl unpin``: serve exactly one version, or the release's policy.

See mnistctl.modelconfig for how a pin lives beside Helm. The ConfigMap is changed with a
patch that carries its resourceVersion, so a concurrent change (a ``helm upgrade``
rendering it at the same moment) fails the patch instead of being overwritten.
"""

from __future__ import annotations

import time
from typing import Any

from mnistctl import live, modelconfig
from mnistctl.errors import EXIT_REFUSED, EXIT_TIMEOUT, CliError
from mnistctl.release import Release
from mnistctl.status import serving_config, training_runs

POLL_SECONDS = 2.0


def pin(release: Release, version: int, *, force: bool) -> dict[str, Any]:
    release.require()
    section, config_map = serving_config(release)
    data = config_map.data or {}
    if modelconfig.RELEASE_KEY not in data:
        raise CliError(
            f"ConfigMap {section['config_map']} has no {modelconfig.RELEASE_KEY}: the release's "
            "chart predates pinning with mnistctl; upgrade the release first",
            EXIT_REFUSED,
        )
    exported = sorted(
        {r["version"] for r in training_runs(release) if isinstance(r["version"], int)}
    )
    if version not in exported and not force:
        known = ", ".join(map(str, exported)) or "none"
        raise CliError(
            f"version {version} is not among the versions training runs reported ({known}); "
            "--force pins it anyway (TF Serving serves nothing until it exists)",
            EXIT_REFUSED,
        )
    text = modelconfig.pinned(data[modelconfig.RELEASE_KEY], version)
    _patch(release, config_map, text, str(version))
    return {
        "release": release.name,
        "namespace": release.namespace,
        "config_map": section["config_map"],
        "pinned": version,
        "pinned_before": section["pinned"],
        "policy": modelconfig.describe(modelconfig.parse(text)),
        "live": None,
    }


def unpin(release: Release) -> dict[str, Any]:
    release.require()
    section, config_map = serving_config(release)
    data = config_map.data or {}
    if modelconfig.RELEASE_KEY not in data:
        raise CliError(
            f"ConfigMap {section['config_map']} has no {modelconfig.RELEASE_KEY}: "
            "nothing to return to",
            EXIT_REFUSED,
        )
    text = data[modelconfig.RELEASE_KEY]
    if section["pinned"] is not None or data.get(modelconfig.CONFIG_KEY) != text:
        _patch(release, config_map, text, None)
    return {
        "release": release.name,
        "namespace": release.namespace,
        "config_map": section["config_map"],
        "pinned": None,
        "pinned_before": section["pinned"],
        "policy": modelconfig.describe(modelconfig.parse(text)),
        "live": None,
    }


def _patch(release: Release, config_map, text: str, pin: str | None) -> None:
    body = {
        "metadata": {
            "resourceVersion": config_map.metadata.resource_version,
            "annotations": {modelconfig.PIN_ANNOTATION: pin},
        },
        "data": {modelconfig.CONFIG_KEY: text},
    }
    release.kube.call(
        f"patch ConfigMap {config_map.metadata.name}",
        release.kube.core.patch_namespaced_config_map,
        config_map.metadata.name,
        release.namespace,
        body,
    )


def wait_served(
    release: Release, model: str, version: int | None, *, timeout: float
) -> list[dict[str, Any]]:
    """Ask TF Serving (service proxy) until it serves exactly ``version`` (None: any one
    version and nothing else loading); its version states at the end."""
    deadline = time.monotonic() + timeout
    while True:
        state = live.tf_serving(release, model)
        available = [v["version"] for v in state["versions"] if v["state"] == "AVAILABLE"]
        busy = [v for v in state["versions"] if v["state"] not in ("AVAILABLE", "END")]
        settled = (version is None and available) or available == [version]
        if state["reachable"] and not busy and settled:
            return state["versions"]
        if time.monotonic() >= deadline:
            seen = state["error"] or ", ".join(
                f"{v['version']} {v['state']}" for v in state["versions"]
            )
            raise CliError(
                f"timed out after {timeout:.0f} s waiting for TF Serving ({seen}); the kubelet "
                "refreshes the mounted config within about a minute, TF Serving re-reads it "
                "every serving.modelConfigPollWaitSeconds",
                EXIT_TIMEOUT,
            )
        time.sleep(POLL_SECONDS)


def pin_table(data: dict[str, Any]) -> str:
    if data["pinned"] is not None:
        line = f"configmap/{data['config_map']}: serving pinned to version {data['pinned']}"
    elif data["pinned_before"] is not None:
        line = (
            f"configmap/{data['config_map']}: unpinned from version {data['pinned_before']}, "
            f"back to the release's policy ({data['policy']})"
        )
    else:
        line = (
            f"configmap/{data['config_map']}: not pinned; serving the release's policy "
            f"({data['policy']})"
        )
    if data["live"] is not None:
        states = ", ".join(f"{v['version']} {v['state']}" for v in data["live"])
        line += f"\nTF Serving: {states}"
    else:
        line += (
            "\nTF Serving re-reads it within about a minute and a half (kubelet refresh plus "
            "serving.modelConfigPollWaitSeconds); --wait follows it"
        )
    return line
