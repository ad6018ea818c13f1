"""Every rendered object is valid against the Kubernetes 1.32 OpenAPI schemas, strictly.

Strict mode rejects unknown fields, which catches mis-indented or misspelt keys
that the API server would silently drop.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.chart.conftest import SCENARIOS

KUBERNETES_VERSION = "1.32"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_match_kubernetes_schemas(rendered, scenario):
    errors = []
    for obj in rendered[scenario]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    assert not errors, "\n".join(errors)


def test_validator_rejects_unknown_fields():
    # The check above is only worth something if strict mode bites.
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targetPrt": 8080}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
