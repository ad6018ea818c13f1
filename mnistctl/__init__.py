"""``mnistctl``: operate a running release of the mnist Helm chart through the Kubernetes API.

Commands: status, scale, retrain, models, pin, unpin, predict, logs (``mnistctl --help``).
Everything goes through the API server named by the kubeconfig, with kubectl's conventions:
``--kubeconfig``, ``--context``, ``-n/--namespace``, plus ``--release`` (default ``mnist``)
and ``-o table|json|yaml``. The JSON shapes and exit codes are documented in
docs/operations.md.
"""
