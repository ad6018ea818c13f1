"""The connection to the API server, and API errors turned into one-line messages."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from mnistctl.errors import (
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    CliError,
)

T = TypeVar("T")

# Seconds for one API request (a log stream with --follow has none).
DEFAULT_REQUEST_TIMEOUT = 20.0


@dataclass(frozen=True)
class Target:
    """Where to connect: what kubectl's global flags give."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT


class Kube:
    """Typed API groups over one ApiClient; ``call`` runs a request with errors translated."""

    def __init__(self, api_client: client.ApiClient, namespace: str, request_timeout: float):
        self.api_client = api_client
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.host = api_client.configuration.host
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    def call(self, what: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``method(*args, **kwargs)`` with a request timeout; any failure becomes a CliError
        whose message starts with ``what`` (e.g. "list Deployments")."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return method(*args, **kwargs)
        except ApiException as error:
            raise api_error(error, what) from None
        except (urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as error:
            raise unreachable(self.host, error) from None

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """A raw request to an API path (service proxy): (status, body), API errors raised."""
        try:
            response = self.api_client.call_api(
                path,
                method,
                header_params={"Content-Type": "application/json", "Accept": "*/*"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout or self.request_timeout,
            )
        except ApiException as error:
            raise ProxiedError.from_api(error, what) from None
        except (urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as error:
            raise unreachable(self.host, error) from None
        return response.status, response.data


class ProxiedError(Exception):
    """An error answer through the service proxy: the API server's, or the backend's own."""

    def __init__(self, what: str, status: int, body: bytes | str, message: str) -> None:
        super().__init__(f"{what}: {status} {message}")
        self.what = what
        self.status = status
        self.body = body
        self.message = message

    @classmethod
    def from_api(cls, error: ApiException, what: str) -> ProxiedError:
        body = error.body if isinstance(error.body, str | bytes) else b""
        return cls(what, error.status or 0, body, status_message(error))


def connect(target: Target) -> Kube:
    """An API client for the kubeconfig and context, or in-cluster credentials when no
    kubeconfig exists and the process runs in a pod; the namespace as kubectl resolves it."""
    configuration = client.Configuration()
    # One attempt per request: a dead API server fails in one timeout, not four.
    configuration.retries = False
    explicit = target.kubeconfig or os.environ.get("KUBECONFIG")
    default_file = os.path.expanduser(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    namespace = target.namespace
    try:
        if explicit or os.path.exists(default_file) or not _in_cluster():
            config.load_kube_config(
                config_file=target.kubeconfig,
                context=target.context,
                client_configuration=configuration,
                persist_config=False,
            )
            if namespace is None:
                namespace = _context_namespace(target.kubeconfig, target.context)
        else:
            config.load_incluster_config(client_configuration=configuration)
            if namespace is None:
                namespace = _in_cluster_namespace()
    except ConfigException as error:
        where = target.kubeconfig or os.environ.get("KUBECONFIG") or default_file
        raise CliError(f"cannot use kubeconfig {where}: {error}", EXIT_UNREACHABLE) from None
    except (OSError, ValueError, TypeError) as error:
        where = target.kubeconfig or os.environ.get("KUBECONFIG") or default_file
        raise CliError(f"cannot read kubeconfig {where}: {error}", EXIT_UNREACHABLE) from None
    return Kube(client.ApiClient(configuration), namespace or "default", target.request_timeout)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _in_cluster_namespace() -> str | None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as file:
            return file.read().strip() or None
    except OSError:
        return None


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), None)
    if not chosen:
        return None
    return (chosen.get("context") or {}).get("namespace") or None


def status_message(error: ApiException) -> str:
    """The ``message`` of a Kubernetes Status body, or the HTTP reason."""
    body = error.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return body.strip().splitlines()[0][:300]
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
    return f"{error.status} {error.reason}".strip()


def api_error(error: ApiException, what: str) -> CliError:
    message = status_message(error)
    if error.status == 401:
        return CliError(
            f"{what}: the API server refused the credentials (401 Unauthorized)", EXIT_FORBIDDEN
        )
    if error.status == 403:
        return CliError(
            f"{forbidden(message)} (mnistctl's rights: the chart's operator Role, "
            "operator.rbac.create=true)",
            EXIT_FORBIDDEN,
        )
    if error.status == 404:
        return CliError(f"{what}: not found ({message})", EXIT_NOT_FOUND)
    if error.status == 409:
        return CliError(f"{what}: conflict: {message}", EXIT_REFUSED)
    if error.status in (400, 422):
        return CliError(f"{what}: rejected: {message}", EXIT_FAILED)
    return CliError(f"{what}: the API server answered {message}", EXIT_FAILED)


def unreachable(host: str, error: BaseException) -> CliError:
    return CliError(
        f"cannot reach the API server at {host}: {_root_cause(error)}", EXIT_UNREACHABLE
    )


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a urllib3 error chain, without its object reprs."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        seen += 1
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        if current.__cause__ is not None:
            current = current.__cause__
            continue
        break
    if isinstance(current, ConnectionRefusedError) or "Connection refused" in str(current):
        return "connection refused"
    if isinstance(current, TimeoutError | urllib3.exceptions.TimeoutError):
        return "timed out"
    text = str(current)
    # urllib3's messages put an object repr before the useful part.
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return text.strip() or type(current).__name__


def forbidden(message: str) -> str:
    """A 403's message, said to be one: the API server's usually says "is forbidden" itself."""
    return message if "forbidden" in message else f"forbidden: {message}"
