"""A release of the chart, found through its labels: its Deployments, StatefulSet, Jobs, HPAs.

Objects are looked up by the chart's labels (``app.kubernetes.io/instance=<release>``,
``app.kubernetes.io/component=<component>``), never by guessed names, so ``nameOverride``
and ``fullnameOverride`` need no flag.
"""

from __future__ import annotations

from functools import cached_property

from kubernetes.client import V1Deployment, V1Job, V1Pod
from kubernetes.client.rest import ApiException

from mnistctl.errors import EXIT_NOT_FOUND, CliError
from mnistctl.kube import Kube

LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

# The components mnistctl knows, and the kind of object that runs each.
DEPLOYMENTS = ("gateway", "serving")
SCALABLE = DEPLOYMENTS
LOG_COMPONENTS = ("gateway", "serving", "cassandra", "training")

# The serving pod reads its model config from here (helm/mnist/templates/serving/deployment.yaml).
MODEL_CONFIG_DIR = "/etc/serving/models"


class Release:
    def __init__(self, kube: Kube, name: str) -> None:
        self.kube = kube
        self.name = name
        self.namespace = kube.namespace

    def selector(self, component: str | None = None) -> str:
        selector = f"{LABEL_INSTANCE}={self.name}"
        if component:
            selector += f",{LABEL_COMPONENT}={component}"
        return selector

    # ---- existence ----

    @cached_property
    def deployments(self) -> dict[str, V1Deployment]:
        """The release's Deployments by component; raises when there are none."""
        found = self.kube.call(
            "list Deployments",
            self.kube.apps.list_namespaced_deployment,
            self.namespace,
            label_selector=self.selector(),
        ).items
        if not found:
            self._not_found()
        by_component: dict[str, V1Deployment] = {}
        for deployment in found:
            component = (deployment.metadata.labels or {}).get(LABEL_COMPONENT)
            if component:
                by_component[component] = deployment
        return by_component

    def require(self) -> None:
        """Fail with a one-line error unless the release exists in the namespace."""
        _ = self.deployments

    def _not_found(self) -> None:
        try:
            self.kube.core.read_namespace(
                self.namespace, _request_timeout=self.kube.request_timeout
            )
        except ApiException as error:
            if error.status == 404:
                raise CliError(f'namespace "{self.namespace}" not found', EXIT_NOT_FOUND) from None
            # 403: the namespace may exist; say what is known.
        raise CliError(
            f'release "{self.name}" not found in namespace "{self.namespace}": no Deployment '
            f"labelled {LABEL_INSTANCE}={self.name} (give --release or -n/--namespace)",
            EXIT_NOT_FOUND,
        )

    def deployment(self, component: str) -> V1Deployment:
        try:
            return self.deployments[component]
        except KeyError:
            raise CliError(
                f'release "{self.name}" has no {component} Deployment', EXIT_NOT_FOUND
            ) from None

    def read_deployment(self, component: str) -> V1Deployment:
        """A fresh copy of a component's Deployment."""
        name = self.deployment(component).metadata.name
        return self.kube.call(
            f"read Deployment {name}",
            self.kube.apps.read_namespaced_deployment,
            name,
            self.namespace,
        )

    # ---- other objects ----

    def statefulsets(self, component: str) -> list:
        return self.kube.call(
            "list StatefulSets",
            self.kube.apps.list_namespaced_stateful_set,
            self.namespace,
            label_selector=self.selector(component),
        ).items

    def pods(self, component: str | None = None, selector: str | None = None) -> list[V1Pod]:
        return self.kube.call(
            "list Pods",
            self.kube.core.list_namespaced_pod,
            self.namespace,
            label_selector=selector or self.selector(component),
        ).items

    def job_pods(self, job: V1Job) -> list[V1Pod]:
        pods = self.pods(selector=f"{JOB_NAME_LABEL}={job.metadata.name}")
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def training_jobs(self) -> list[V1Job]:
        """The release's training Jobs (Helm's, the CronJob's and mnistctl's), oldest first."""
        jobs = self.kube.call(
            "list Jobs",
            self.kube.batch.list_namespaced_job,
            self.namespace,
            label_selector=self.selector("training"),
        ).items
        return sorted(jobs, key=lambda j: j.metadata.creation_timestamp)

    def cronjobs(self) -> list:
        return self.kube.call(
            "list CronJobs",
            self.kube.batch.list_namespaced_cron_job,
            self.namespace,
            label_selector=self.selector("training"),
        ).items

    def hpa_for(self, deployment: V1Deployment):
        """The HorizontalPodAutoscaler that scales this Deployment, if any."""
        hpas = self.kube.call(
            "list HorizontalPodAutoscalers",
            self.kube.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            self.namespace,
        ).items
        for hpa in hpas:
            ref = hpa.spec.scale_target_ref
            if ref.kind == "Deployment" and ref.name == deployment.metadata.name:
                return hpa
        return None

    def model_config_map_name(self) -> str:
        """The ConfigMap behind TF Serving's --model_config_file, from the serving pod spec."""
        spec = self.deployment("serving").spec.template.spec
        mounts = {m.name: m.mount_path for c in spec.containers for m in (c.volume_mounts or [])}
        for volume in spec.volumes or []:
            if volume.config_map and mounts.get(volume.name) == MODEL_CONFIG_DIR:
                return volume.config_map.name
        raise CliError(
            f"the serving Deployment mounts no ConfigMap at {MODEL_CONFIG_DIR}: "
            "a chart older than mnistctl?",
            EXIT_NOT_FOUND,
        )

    def gateway_service(self) -> tuple[str, str]:
        """(Service name, port name) of the gateway, for the API server's service proxy."""
        return self._service("gateway", "http")

    def serving_service(self) -> tuple[str, str]:
        return self._service("serving", "http")

    def _service(self, component: str, port: str) -> tuple[str, str]:
        # The chart names a component's Service like its Deployment.
        name = self.deployment(component).metadata.name
        service = self.kube.call(
            f"read Service {name}", self.kube.core.read_namespaced_service, name, self.namespace
        )
        if not any(p.name == port for p in service.spec.ports or []):
            raise CliError(f"Service {name} has no port named {port}", EXIT_NOT_FOUND)
        return name, port

    def proxy_path(self, service: tuple[str, str], path: str) -> str:
        name, port = service
        return (
            f"/api/v1/namespaces/{self.namespace}/services/{name}:{port}/proxy/{path.lstrip('/')}"
        )
