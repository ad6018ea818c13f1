"""A local Kubernetes control plane with kwok nodes, on 127.0.0.1 only.

    cluster.py up        start it (idempotent) and wait until every node is Ready
    cluster.py down      stop every process it started and remove its state
    cluster.py status    print what runs; exit 0 when the API server answers, 3 if not
    cluster.py volumes   offer Released volumes again and top up the volume pool
    cluster.py images REF...   import podman images into the real node's containerd

The control plane is real: etcd, kube-apiserver (RBAC, the default admission
plugins including PodSecurity, NodeRestriction), kube-controller-manager (every
default controller, service-account tokens, certificate signing) and
kube-scheduler, built by scripts/cluster/build.sh into ``$KUBE_DIR``. The nodes
are kwok fakes (``$KWOK_DIR/kwok``): the scheduler places pods on them and kwok
moves the pods through their phases (Ready at once, Job and ``helm test`` pods
Succeeded), but no container runs. ``NODE=real`` gives one real node instead:
containerd, a kubelet, kube-proxy and CoreDNS in a network namespace of the
project's own (real_node.py); the API server then listens on that namespace's
host end, 10.90.0.1, rather than on 127.0.0.1.

Everything lives in ``$STATE_DIR/cluster``: a certificate authority and
certificates made per cluster with openssl, kubeconfigs (the admin one at
``$STATE_DIR/cluster/kubeconfig``), etcd's data, logs, pid files, and the
directories behind the static hostPath PersistentVolumes that let claims bind
(Retain, without a class, plus a few per class in ``CLUSTER_VOLUME_CLASSES``).
``down`` removes all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 15.0
EXIT_NOT_RUNNING = 3
LOG_TAIL_LINES = 30
# kwok manages the nodes that carry this annotation, and no others.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Upstream kwok stages copied next to the binary by build.sh (kustomize/stage/...).
KWOK_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)
# `helm test` pods have no Job owner, so upstream's pod-complete leaves them
# Running; this stage completes them as a passing test would.
HELM_TEST_STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-helm-test-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["helm.sh/hook"]'
      operator: 'In'
      values: ['test']
  next:
    statusTemplate: |
      {{ $now := Now }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
"""


def _env_path(name: str, default: str) -> Path:
    path = Path(os.path.expanduser(os.environ.get(name) or default))
    return path if path.is_absolute() else REPO_ROOT / path


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class Settings:
    kube_dir: Path
    kwok_dir: Path
    coredns_dir: Path
    state: Path
    api_port: int
    etcd_port: int
    controller_manager_port: int
    scheduler_port: int
    nodes: int
    node_provider: str
    volumes: int
    volume_classes: tuple[str, ...]
    volumes_per_class: int

    @classmethod
    def from_env(cls) -> Settings:
        cache = _env_path("CACHE_DIR", "~/.cache/mnist-serving")
        kube_version = os.environ.get("KUBE_VERSION") or "v1.32.13"
        kwok_version = os.environ.get("KWOK_VERSION") or "v0.8.0"
        coredns_version = os.environ.get("COREDNS_VERSION") or "v1.12.1"
        etcd_port = _env_int("CLUSTER_ETCD_PORT", 2379)
        state = _env_path("STATE_DIR", ".cache") / "cluster"
        return cls(
            kube_dir=_env_path("KUBE_DIR", str(cache / f"kube-{kube_version}")),
            kwok_dir=_env_path("KWOK_DIR", str(cache / f"kwok-{kwok_version}")),
            coredns_dir=_env_path("COREDNS_DIR", str(cache / f"coredns-{coredns_version}")),
            state=state,
            api_port=_env_int("CLUSTER_API_PORT", 6443),
            etcd_port=etcd_port,
            controller_manager_port=_env_int("CLUSTER_CONTROLLER_MANAGER_PORT", 10257),
            scheduler_port=_env_int("CLUSTER_SCHEDULER_PORT", 10259),
            nodes=_env_int("CLUSTER_NODES", 3),
            node_provider=os.environ.get("NODE") or _recorded_provider(state) or "kwok",
            volumes=_env_int("CLUSTER_VOLUMES", 8),
            volume_classes=tuple(
                (os.environ.get("CLUSTER_VOLUME_CLASSES") or "nfs-client").split()
            ),
            volumes_per_class=_env_int("CLUSTER_VOLUMES_PER_CLASS", 2),
        )

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def volume_root(self) -> Path:
        return self.state / "volumes"

    @property
    def api_host(self) -> str:
        return node_provider(self).api_host

    @property
    def api_url(self) -> str:
        return f"https://{self.api_host}:{self.api_port}"

    def binary(self, name: str) -> Path:
        directory = {"kwok": self.kwok_dir, "coredns": self.coredns_dir}.get(name, self.kube_dir)
        path = directory / name
        if not os.access(path, os.X_OK):
            raise ClusterError(f"{path} is missing: build it with `make cluster-binaries`")
        return path


def _recorded_provider(state: Path) -> str | None:
    """The NODE a running cluster was started with, so later commands need not repeat it."""
    try:
        return (state / "node-provider").read_text().strip() or None
    except OSError:
        return None


# ---------- certificates (openssl) ----------


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )


def _sign(pki: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate for name, signed by the cluster's CA."""
    key, csr, crt, ext = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-days", "365", "-sha256", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


# (file name, subject) of the client certificates; O=system:masters is cluster-admin.
CLIENTS = {
    "admin": "/O=system:masters/CN=mnist-admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
    # kwok writes node and pod status, leases and deletions for every node it fakes.
    "kwok": "/O=system:masters/CN=kwok-controller",
    # The API server's identity towards kubelets (logs, exec) once a real node exists.
    "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
}


def make_pki(pki: Path, clients: dict[str, str], api_host: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".pki-", dir=pki.parent))
    try:
        _new_key(tmp / "ca.key")
        _openssl(
            "req", "-x509", "-new", "-key", str(tmp / "ca.key"),
            "-subj", "/CN=mnist-local-cluster-ca",
            "-days", "365", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", str(tmp / "ca.crt"),
        )  # fmt: skip
        sans = ",".join(
            [f"IP:{ip}" for ip in dict.fromkeys([HOST, api_host, SERVICE_IP])]
            + ["DNS:localhost", "DNS:kubernetes"]
            + [f"DNS:kubernetes.default{s}" for s in ("", ".svc", f".svc.{CLUSTER_DOMAIN}")]
        )
        _sign(
            tmp,
            "apiserver",
            "/CN=kube-apiserver",
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
        )
        for name, subject in clients.items():
            _sign(
                tmp,
                name,
                subject,
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
            )
        # Service-account tokens: the controller-manager signs, the API server verifies.
        _new_key(tmp / "sa.key")
        _openssl("pkey", "-in", str(tmp / "sa.key"), "-pubout", "-out", str(tmp / "sa.pub"))
        for path in tmp.iterdir():
            path.chmod(0o600)
        tmp.rename(pki)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_kubeconfig(settings: Settings, path: Path, client: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for one client certificate."""
    import base64

    def b64(name: str) -> str:
        return base64.b64encode((settings.pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mnist-local",
                "cluster": {
                    "server": settings.api_url,
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate-data": b64(f"{client}.crt"),
                    "client-key-data": b64(f"{client}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "mnist-local", "context": {"cluster": "mnist-local", "user": client}}
        ],
        "current-context": "mnist-local",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.rename(path)


# ---------- processes ----------


@dataclass(frozen=True)
class Component:
    name: str
    binary: Path
    args: tuple[str, ...]
    # Started with `nsenter --net=/run/netns/<netns>`, which execs the binary in that
    # network namespace (and only that one), so the pid file still names the binary.
    netns: str | None = None


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run / f"{name}.pid"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid recorded for a component, if that process still runs our binary."""
    path = _pid_file(settings, name)
    try:
        pid_text, binary = path.read_text().split("\n", 1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if not cmdline or cmdline[0] != binary.strip() or _is_zombie(pid):
        return None
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def start(settings: Settings, component: Component) -> subprocess.Popen[bytes]:
    log = settings.logs / f"{component.name}.log"
    with log.open("ab") as out:
        prefix = ["nsenter", f"--net=/run/netns/{component.netns}", "--"] if component.netns else []
        process = subprocess.Popen(
            [*prefix, str(component.binary), *component.args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.state,
        )
    _pid_file(settings, component.name).write_text(f"{process.pid}\n{component.binary}\n")
    return process


def log_tail(settings: Settings, name: str) -> str:
    try:
        lines = (settings.logs / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def stop(settings: Settings, name: str) -> None:
    pid = running_pid(settings, name)
    if pid is not None:
        # Each component leads its own session: signal the group, which is only it.
        # SIGKILL only if it outlives the grace period; either way wait until it exited.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _is_zombie(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while time.monotonic() < deadline and not _is_zombie(pid):
                time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    _pid_file(settings, name).unlink(missing_ok=True)


# ---------- health ----------


def _client_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.pki / "ca.crt"))
    context.load_cert_chain(str(settings.pki / "admin.crt"), str(settings.pki / "admin.key"))
    return context


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as error:
        return 0, str(error)


def _insecure_context() -> ssl.SSLContext:
    # The controller-manager and scheduler serve /healthz with a self-signed
    # certificate of their own; only liveness is read from it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_until(
    settings: Settings,
    process: subprocess.Popen[bytes],
    name: str,
    check,
    timeout: float = START_TIMEOUT_SECONDS,
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(
                f"{name} exited ({process.returncode}) during start-up:\n{log_tail(settings, name)}"
            )
        ok, last = check()
        if ok:
            return
        time.sleep(0.5)
    raise ClusterError(
        f"{name} not healthy after {timeout:.0f} s ({last}):\n{log_tail(settings, name)}"
    )


def api_ready(settings: Settings) -> bool:
    if not (settings.pki / "admin.crt").exists():
        return False
    status, _ = _get(f"{settings.api_url}/readyz", _client_context(settings))
    return status == 200


# ---------- kubectl ----------


def kubectl(settings: Settings, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(settings.binary("kubectl")), "--kubeconfig", str(settings.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def apply(settings: Settings, objects: list[dict]) -> None:
    kubectl(
        settings,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )


# ---------- control plane ----------


def control_plane(settings: Settings) -> list[Component]:
    pki = settings.pki
    etcd_url = f"http://{HOST}:{settings.etcd_port}"
    peer_url = f"http://{HOST}:{settings.etcd_port + 1}"
    kube = {name: str(settings.state / f"{name}.kubeconfig") for name in CLIENTS}
    api_host = settings.api_host
    return [
        Component(
            "etcd",
            settings.binary("etcd"),
            (
                "--name=local",
                f"--data-dir={settings.state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                # A throw-away test cluster: durability of etcd's writes buys nothing.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ),
        ),
        Component(
            "kube-apiserver",
            settings.binary("kube-apiserver"),
            (
                f"--bind-address={api_host}",
                f"--advertise-address={api_host}",
                f"--secure-port={settings.api_port}",
                f"--etcd-servers={etcd_url}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                "--authorization-mode=Node,RBAC",
                # On top of the default plugins (PodSecurity, ServiceAccount, LimitRanger,
                # ResourceQuota, DefaultStorageClass, the admission webhooks, ...).
                "--enable-admission-plugins=NodeRestriction",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                # One API server on loopback: no Endpoints for the kubernetes Service.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *node_provider(settings).apiserver_flags(),
            ),
        ),
        Component(
            "kube-controller-manager",
            settings.binary("kube-controller-manager"),
            (
                f"--kubeconfig={kube['controller-manager']}",
                f"--authentication-kubeconfig={kube['controller-manager']}",
                f"--authorization-kubeconfig={kube['controller-manager']}",
                f"--bind-address={HOST}",
                f"--secure-port={settings.controller_manager_port}",
                f"--cert-dir={settings.run / 'controller-manager'}",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
            ),
        ),
        Component(
            "kube-scheduler",
            settings.binary("kube-scheduler"),
            (
                f"--kubeconfig={kube['scheduler']}",
                f"--authentication-kubeconfig={kube['scheduler']}",
                f"--authorization-kubeconfig={kube['scheduler']}",
                f"--bind-address={HOST}",
                f"--secure-port={settings.scheduler_port}",
                f"--cert-dir={settings.run / 'scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
            ),
        ),
    ]


def health_checks(settings: Settings) -> dict:
    insecure = _insecure_context()

    def etcd() -> tuple[bool, str]:
        status, body = _get(f"http://{HOST}:{settings.etcd_port}/health")
        return status == 200 and '"true"' in body, body

    def apiserver() -> tuple[bool, str]:
        status, body = _get(f"{settings.api_url}/readyz", _client_context(settings))
        return status == 200, body[-300:]

    def healthz(port: int):
        def check() -> tuple[bool, str]:
            status, body = _get(f"https://{HOST}:{port}/healthz", insecure)
            return status == 200, body

        return check

    return {
        "etcd": etcd,
        "kube-apiserver": apiserver,
        "kube-controller-manager": healthz(settings.controller_manager_port),
        "kube-scheduler": healthz(settings.scheduler_port),
    }


# ---------- nodes ----------


class KwokNodes:
    """Fake nodes: Node objects that kwok keeps Ready, and whose pods it plays.

    The node-provider interface (RealNode in real_node.py is the other one): names,
    api_host, clients, apiserver_flags, components, health_checks, prepare, started,
    register, volume_source and teardown.
    """

    name = "kwok"
    api_host = HOST
    clients: types.MappingProxyType[str, str] = types.MappingProxyType({})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def apiserver_flags(self) -> tuple[str, ...]:
        return ()

    def health_checks(self) -> dict:
        return {}

    def started(self, name: str) -> None:
        pass

    def volume_source(self, path: Path) -> dict:
        return {"hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}

    def teardown(self) -> None:
        pass

    def names(self) -> list[str]:
        return [f"kwok-node-{i}" for i in range(self.settings.nodes)]

    def components(self) -> list[Component]:
        stages = self.settings.state / "kwok-stages.yaml"
        return [
            Component(
                "kwok",
                self.settings.binary("kwok"),
                (
                    f"--kubeconfig={self.settings.state / 'kwok.kubeconfig'}",
                    f"--config={stages}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_ANNOTATION),
                    f"--cidr={POD_CIDR}",
                    "--node-lease-duration-seconds=40",
                ),
            )
        ]

    def prepare(self) -> None:
        stage_dir = self.settings.kwok_dir / "stages"
        documents = []
        for name in KWOK_STAGES:
            path = stage_dir / name
            if not path.exists():
                raise ClusterError(f"{path} is missing: rebuild with `make cluster-binaries`")
            documents.append(path.read_text().strip())
        documents.append(HELM_TEST_STAGE.strip())
        (self.settings.state / "kwok-stages.yaml").write_text("\n---\n".join(documents) + "\n")

    def register(self) -> None:
        nodes = []
        for name in self.names():
            resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                    },
                    "status": {"capacity": resources, "allocatable": resources},
                }
            )
        apply(self.settings, nodes)


def _real_node(settings: Settings):
    from real_node import RealNode  # root-only tooling (namespaces, containerd): loaded on demand

    return RealNode(settings)


NODE_PROVIDERS = {"kwok": KwokNodes, "real": _real_node}


def node_provider(settings: Settings):
    try:
        return NODE_PROVIDERS[settings.node_provider](settings)
    except KeyError:
        choices = ", ".join(sorted(NODE_PROVIDERS))
        raise ClusterError(f"NODE={settings.node_provider} is not supported: {choices}") from None


def wait_for_nodes(
    settings: Settings, names: list[str], timeout: float = START_TIMEOUT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while time.monotonic() < deadline:
        items = json.loads(kubectl(settings, "get", "nodes", "-o", "json"))["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n["status"].get("conditions", [])
            )
        }
        pending = set(names) - ready
        if not pending:
            return
        time.sleep(0.5)
    raise ClusterError(
        f"nodes not Ready after {timeout:.0f} s: {sorted(pending)}\n{log_tail(settings, 'kwok')}"
    )


def wait_for_default_service_account(
    settings: Settings, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Pods cannot be created in a namespace until its default ServiceAccount exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [str(settings.binary("kubectl")), "--kubeconfig", str(settings.kubeconfig),
             "-n", "default", "get", "serviceaccount", "default", "-o", "name"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return
        time.sleep(0.5)
    raise ClusterError("the controller-manager created no default ServiceAccount")


# ---------- volumes ----------

VOLUME_LABEL = "mnist-serving.local/volume-pool"


def _volume_directory(path: Path) -> None:
    # Writable by every pod's user, as local-path-provisioner makes its directories: a
    # local volume gets a pod's fsGroup only at its first mount, and when that mount is
    # read-only (TF Serving's) the training pod that writes the models later could not.
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)


def _volume(settings: Settings, name: str, storage_class: str) -> dict:
    path = settings.volume_root / name
    _volume_directory(path)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {VOLUME_LABEL: "true"}},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            **node_provider(settings).volume_source(path),
        },
    }


def ensure_volumes(settings: Settings) -> list[str]:
    """Static hostPath volumes: `volumes` without a class, `volumes_per_class` per class.

    A volume whose claim was deleted is Released (Retain); it is emptied and offered
    again, as an administrator would, so the pool never runs dry between test runs.
    """
    existing = json.loads(kubectl(settings, "get", "pv", "-l", VOLUME_LABEL, "-o", "json"))["items"]
    recycled = []
    for pv in existing:
        if pv["status"].get("phase") == "Released":
            name = pv["metadata"]["name"]
            source = pv["spec"].get("hostPath") or pv["spec"].get("local")
            path = Path(source["path"])
            if settings.volume_root in path.parents:
                shutil.rmtree(path, ignore_errors=True)
                _volume_directory(path)
            kubectl(
                settings,
                "patch",
                "pv",
                name,
                "--type=json",
                "-p",
                '[{"op": "remove", "path": "/spec/claimRef"}]',
            )
            recycled.append(name)
    wanted = [(f"pv-{i:02d}", "") for i in range(settings.volumes)]
    for storage_class in settings.volume_classes:
        wanted += [
            (f"pv-{storage_class}-{i:02d}", storage_class)
            for i in range(settings.volumes_per_class)
        ]
    names = {pv["metadata"]["name"] for pv in existing}
    missing = [_volume(settings, name, cls) for name, cls in wanted if name not in names]
    if missing:
        apply(settings, missing)
    return recycled


# ---------- up / down ----------


@contextlib.contextmanager
def cluster_lock(settings: Settings) -> Iterator[None]:
    settings.state.parent.mkdir(parents=True, exist_ok=True)
    with open(settings.state.parent / "cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def all_components(settings: Settings) -> list[Component]:
    return control_plane(settings) + node_provider(settings).components()


def up(settings: Settings) -> None:
    nodes = node_provider(settings)
    components = all_components(settings)
    names = [c.name for c in components]
    alive = [n for n in names if running_pid(settings, n) is not None]
    if len(alive) == len(names) and api_ready(settings):
        nodes.register()
        ensure_volumes(settings)
        wait_for_nodes(settings, nodes.names())
        print(f"cluster already up; export KUBECONFIG={settings.kubeconfig}")
        return
    if alive or settings.state.exists():
        print("removing a partial cluster first", file=sys.stderr)
        down(settings)

    started = time.monotonic()
    for path in (settings.state, settings.run, settings.logs):
        path.mkdir(parents=True, exist_ok=True)
    (settings.state / "node-provider").write_text(f"{nodes.name}\n")
    clients = CLIENTS | nodes.clients
    make_pki(settings.pki, clients, nodes.api_host)
    write_kubeconfig(settings, settings.kubeconfig, "admin")
    for client in clients:
        write_kubeconfig(settings, settings.state / f"{client}.kubeconfig", client)
    checks = health_checks(settings) | nodes.health_checks()
    try:
        nodes.prepare()
        for component in components:
            process = start(settings, component)
            if component.name in checks:
                wait_until(settings, process, component.name, checks[component.name])
            nodes.started(component.name)
        wait_for_default_service_account(settings)
        nodes.register()
        ensure_volumes(settings)
        wait_for_nodes(settings, nodes.names())
    except BaseException:
        down(settings)
        raise
    print(
        f"cluster up in {time.monotonic() - started:.1f} s: {len(nodes.names())} "
        f"{nodes.name} nodes, API {settings.api_url}\nexport KUBECONFIG={settings.kubeconfig}"
    )


def down(settings: Settings) -> None:
    # A real node's containers, mounts and namespace go first and whatever NODE says:
    # `down` must leave the machine as it was even after a failed or foreign `up`.
    _real_node(settings).teardown()
    if settings.run.exists():
        known = [c.name for c in reversed(control_plane(settings))]
        recorded = [p.stem for p in settings.run.glob("*.pid")]
        # Nodes first, then the control plane in reverse start order, then anything else recorded.
        order = [n for n in recorded if n not in known] + [n for n in known if n in recorded]
        for name in order:
            stop(settings, name)
    shutil.rmtree(settings.state, ignore_errors=True)
    if settings.state.exists():
        raise ClusterError(f"could not remove {settings.state}")


def load_images(settings: Settings, refs: list[str]) -> None:
    """Import images from podman's store into the real node (kwok nodes run none)."""
    if settings.node_provider != "real" or running_pid(settings, "containerd") is None:
        raise ClusterError("images go into a real node: start one with `make cluster-up NODE=real`")
    node = node_provider(settings)
    for ref in refs:
        started = time.monotonic()
        node.import_image(ref)
        print(f"imported {ref} in {time.monotonic() - started:.0f} s")


def status(settings: Settings) -> int:
    for component in all_components(settings):
        pid = running_pid(settings, component.name)
        print(f"{component.name:24} {'pid ' + str(pid) if pid else 'not running'}")
    if api_ready(settings):
        print(f"API server ready at {settings.api_url}; export KUBECONFIG={settings.kubeconfig}")
        return 0
    print("API server not answering")
    return EXIT_NOT_RUNNING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "volumes", "images"])
    parser.add_argument("images", nargs="*", help="images: podman image references to import")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "status":
            return status(settings)
        with cluster_lock(settings):
            if args.command == "up":
                up(settings)
            elif args.command == "down":
                down(settings)
            elif args.command == "images":
                load_images(settings, args.images)
            else:
                recycled = ensure_volumes(settings)
                print(f"volumes ready; offered again: {', '.join(recycled) or 'none'}")
    except ClusterError as error:
        print(f"cluster {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # real_node.py imports this module as `cluster`: let that name be this very module
    # (not a second copy with its own ClusterError).
    sys.modules.setdefault("cluster", sys.modules[__name__])
    sys.exit(main())
