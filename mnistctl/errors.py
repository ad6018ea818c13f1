"""Exit codes scripts can rely on, and the one error type every command raises."""

from __future__ import annotations

EXIT_OK = 0
# The command ran and the outcome is a failure: a training run failed or its model was
# refused by the quality gate, the gateway answered an error, the cluster refused a change.
EXIT_FAILED = 1
# Bad command line or input file (argparse also exits 2).
EXIT_USAGE = 2
# No cluster: the kubeconfig is missing or invalid, or the API server cannot be reached.
EXIT_UNREACHABLE = 3
# The namespace, the release, or one of its components does not exist.
EXIT_NOT_FOUND = 4
# The API server refused the credentials (401) or the permission (403, RBAC).
EXIT_FORBIDDEN = 5
# Refused by mnistctl before any change, with the reason: a training run is still going,
# the version to pin is unknown, the component is not scalable.
EXIT_REFUSED = 6
# --wait gave up after --timeout.
EXIT_TIMEOUT = 7

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the operation ran and failed",
    EXIT_USAGE: "bad command line or input file",
    EXIT_UNREACHABLE: "no cluster: kubeconfig missing or invalid, API server unreachable",
    EXIT_NOT_FOUND: "namespace, release or component not found",
    EXIT_FORBIDDEN: "credentials or RBAC permission refused",
    EXIT_REFUSED: "refused before any change (the message says why)",
    EXIT_TIMEOUT: "--wait timed out",
}


class CliError(Exception):
    """A failure reported as one line on stderr and an exit code; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
