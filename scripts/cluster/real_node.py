"""A real one-node Kubernetes node for the local cluster (``NODE=real``).

The node is a test host of the project's own: a network namespace (``ip netns add``)
joined to the host by a veth pair, host end 10.90.0.1, node end 10.90.0.2 (the node
IP; the kubelet refuses a loopback one). containerd (Debian's package), the kubelet,
kube-proxy and CoreDNS run as host processes started with ``nsenter --net=...``, which
changes only their network namespace (``ip netns exec`` also remounts /sys, and the
kubelet then finds no cgroup mounts). So the pod bridge, every pod address and every
iptables rule kube-proxy writes live inside that namespace; the host gets the veth end,
routes to the pod and Service ranges through the node IP, and nothing else. The API
server listens on the host end, where both the host and the node reach it.

What no registry reachable here provides is made locally: the sandbox ("pause") image
from Debian's busybox-static (pause_image.py). Everything else is built from the Go
module proxy (build.sh) or comes from Debian packages, installed when missing.

State lives in ``$STATE_DIR/cluster/node``; ``cluster.py down`` kills every container,
unmounts what the node mounted, deletes the namespace (and with it the bridge, the
routes and kube-proxy's chains) and removes the machine paths the node created.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cluster
from cluster import ClusterError, Component, Settings
from pause_image import IMAGE as PAUSE_IMAGE
from pause_image import write_archive

NETNS = "mnistnode"
NETNS_PATH = Path("/run/netns") / NETNS
# Where `ip netns add` keeps namespaces: made on first use and mounted on itself (a shared
# mount), and left so by `ip netns delete`. Made by `up` on a machine that had none, it is
# unmounted and removed by `down`.
NETNS_DIR = NETNS_PATH.parent
HOST_VETH = "mnistnode-veth"  # the host's end; the node's end is eth0 inside the namespace
HOST_IP = "10.90.0.1"
NODE_IP = "10.90.0.2"
VETH_PREFIX = 30
NODE_NAME = "mnist-node"
POD_SUBNET = "10.244.0.0/24"  # this node's share of cluster.POD_CIDR
POD_BRIDGE = "mnist-cni0"
CNI_NETWORK = "mnist-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")
DNS_READY_PORT = 8181
PACKAGES = {  # command or file -> the Debian package that provides it
    "/usr/bin/containerd": "containerd",
    "/usr/bin/ctr": "containerd",
    "/usr/sbin/runc": "runc",
    "/bin/busybox": "busybox-static",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/bin/nsenter": "util-linux",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/ip": "iproute2",
}
# Paths of the machine that containerd, the CNI library and the kubelet use whatever
# their configuration says (shim sockets, CNI result cache, container log links). Those
# absent before `up` are recorded and removed by `down`.
MACHINE_PATHS = (
    Path("/run/containerd"),
    Path("/var/lib/cni"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/var/lib/kubelet"),
)
CGROUPS = "cgroups k8s.io"  # marks the cgroup directories of containerd's k8s.io namespace
CLIENTS = {
    # Node authorizer + NodeRestriction: the kubelet may touch only its own node's objects.
    "node": f"/O=system:nodes/CN=system:node:{NODE_NAME}",
    # Bound to system:node-proxier by the API server's default RBAC.
    "kube-proxy": "/CN=system:kube-proxy",
    "coredns": "/CN=mnist-coredns",
}
COREDNS_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "mnist:coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "mnist:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "mnist:coredns",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mnist-coredns"}
        ],
    },
]


def _run(*args: str, check: bool = True, netns: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [*_nsenter(), *args] if netns else list(args)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _nsenter() -> list[str]:
    return ["nsenter", f"--net={NETNS_PATH}", "--"]


def ensure_packages() -> None:
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not Path(path).exists()})
    if missing:
        print(f"installing {' '.join(missing)} (Debian packages)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                raise ClusterError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")


# ---------- the node's network namespace ----------


def network_up() -> None:
    """The namespace, the veth pair and the routes (idempotent)."""
    if not NETNS_PATH.exists():
        _run("ip", "netns", "add", NETNS)
    if _run("ip", "link", "show", HOST_VETH, check=False).returncode != 0:
        _run("ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS)
    _run("ip", "addr", "replace", f"{HOST_IP}/{VETH_PREFIX}", "dev", HOST_VETH)
    _run("ip", "link", "set", HOST_VETH, "up")
    _run("ip", "-n", NETNS, "addr", "replace", f"{NODE_IP}/{VETH_PREFIX}", "dev", "eth0")
    for link in ("lo", "eth0"):
        _run("ip", "-n", NETNS, "link", "set", link, "up")
    # With no default route in the namespace, connect() to a ClusterIP fails with
    # "network unreachable" before kube-proxy's DNAT can run: give the range a route.
    _run("ip", "-n", NETNS, "route", "replace", cluster.SERVICE_CIDR, "dev", "eth0")
    # The host reaches pods and Services through the node, as a router would.
    for cidr in (cluster.POD_CIDR, cluster.SERVICE_CIDR):
        _run("ip", "route", "replace", cidr, "via", NODE_IP, "dev", HOST_VETH)
    # Per-namespace settings: forward between the veth and the pod bridge, and let
    # bridged pod-to-pod traffic through iptables so a pod reaches a Service whose
    # endpoint sits on the same bridge.
    for setting in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
        _run("sysctl", "-q", "-w", setting, netns=True)


def network_down() -> None:
    """Remove the namespace and the host's veth end (and with them every route)."""
    if _run("ip", "link", "show", HOST_VETH, check=False).returncode == 0:
        _run("ip", "link", "delete", HOST_VETH)
    if NETNS_PATH.exists() or NETNS in _run("ip", "netns", "list", check=False).stdout.split():
        _run("ip", "netns", "delete", NETNS)


def _remove_netns_dir() -> None:
    """Unmount and remove NETNS_DIR, unless some other namespace lives there now."""
    if not NETNS_DIR.exists() or any(NETNS_DIR.iterdir()):
        return
    while str(NETNS_DIR) in _mount_points_under([NETNS_DIR]):
        _run("umount", str(NETNS_DIR))
    NETNS_DIR.rmdir()


# ---------- processes of the node ----------


def _descendants(roots: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), set(roots)
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


def _shims(address: Path) -> set[int]:
    """containerd's runc shims serving our containerd (each leads its own session)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = cluster._cmdline(int(entry.name))
            if argv and argv[0].endswith("containerd-shim-runc-v2") and str(address) in argv:
                pids.add(int(entry.name))
    return pids


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _mount_points_under(roots: list[Path]) -> list[str]:
    prefixes = tuple(f"{root.resolve()}/" for root in roots)
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefixes) or f"{point}/" in prefixes:
            points.add(point)
    return sorted(points, key=len, reverse=True)


def _unmount_under(roots: list[Path]) -> None:
    """Lazily unmount every mount point under roots, deepest first."""
    for _ in range(5):
        points = _mount_points_under(roots)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    raise ClusterError(f"could not unmount {_mount_points_under(roots)}")


def _cgroup_dirs() -> list[Path]:
    """The cgroup directories containerd makes for the k8s.io namespace, one per hierarchy."""
    return [h / "k8s.io" for h in Path("/sys/fs/cgroup").iterdir() if (h / "k8s.io").is_dir()]


def _remove_cgroups(directories: list[Path]) -> None:
    # cgroupfs directories go with rmdir, deepest first, once no process is left in them.
    for top in directories:
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


class RealNode:
    """One real node: containerd, the kubelet, kube-proxy and CoreDNS in a namespace."""

    name = "real"
    api_host = HOST_IP
    clients = CLIENTS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state / "node"

    # paths
    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    def names(self) -> list[str]:
        return [NODE_NAME]

    def apiserver_flags(self) -> tuple[str, ...]:
        pki = self.settings.pki
        return (
            # The API server reaches the kubelet at its node IP (no hosts entry needed)
            # and checks the kubelet's serving certificate against the cluster's CA.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        )

    def components(self) -> list[Component]:
        s = self.settings
        coredns = s.binary("coredns")
        return [
            Component(
                "containerd",
                Path(shutil.which("containerd") or "/usr/bin/containerd"),
                ("--config", str(self.dir / "containerd.toml")),
                netns=NETNS,
            ),
            Component(
                "kubelet",
                s.binary("kubelet"),
                (
                    f"--config={self.dir / 'kubelet.yaml'}",
                    f"--kubeconfig={s.state / 'node.kubeconfig'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    f"--root-dir={self.kubelet_root}",
                    f"--cert-dir={self.dir / 'kubelet-pki'}",
                    "--node-labels=mnist-serving.local/node=real",
                    "--v=1",
                ),
                netns=NETNS,
            ),
            Component(
                "kube-proxy",
                s.binary("kube-proxy"),
                (f"--config={self.dir / 'kube-proxy.yaml'}",),
                netns=NETNS,
            ),
            Component("coredns", coredns, ("-conf", str(self.dir / "Corefile")), netns=NETNS),
        ]

    def health_checks(self) -> dict:
        def containerd() -> tuple[bool, str]:
            result = _run(
                "ctr", "--address", str(self.socket), "version", check=False
            )  # fmt: skip
            return result.returncode == 0, result.stderr[-300:]

        def coredns() -> tuple[bool, str]:
            status, body = cluster._get(f"http://{NODE_IP}:{DNS_READY_PORT}/ready")
            return status == 200, body[-300:]

        return {"containerd": containerd, "coredns": coredns}

    def started(self, name: str) -> None:
        if name == "kube-apiserver":
            # CoreDNS reads Services and EndpointSlices from its first moment.
            cluster.apply(self.settings, COREDNS_RBAC)
        elif name == "containerd":
            self.import_archive(self.dir / "pause.tar")

    def import_archive(self, archive: Path) -> None:
        _run("ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import", str(archive))

    def import_image(self, ref: str) -> None:
        """Copy an image from podman's store (make images) into the node's containerd."""
        save = subprocess.Popen(
            ["podman", "--storage-driver", "vfs", "save", "--format", "docker-archive", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        imported = subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        save.stdout.close()
        saved = save.wait()
        if saved != 0 or imported.returncode != 0:
            raise ClusterError(
                f"importing {ref} failed: podman save {saved}: {save.stderr.read().decode()}\n"
                f"ctr images import {imported.returncode}: {imported.stderr}"
            )

    # configuration
    def prepare(self) -> None:
        ensure_packages()
        created = [str(p) for p in MACHINE_PATHS if not p.exists()]
        if not _cgroup_dirs():
            created.append(CGROUPS)
        if not NETNS_DIR.exists():
            created.append(str(NETNS_DIR))
        network_up()
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet-pki", "logs/pods"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "created-paths.json").write_text(json.dumps(created) + "\n")
        self._serving_certificate()
        write_archive(self.dir / "pause.tar", Path("/bin/busybox"))
        (self.dir / "containerd.toml").write_text(self._containerd_config())
        (self.dir / "cni" / "net.d" / "10-mnist-pods.conflist").write_text(self._cni_config())
        (self.dir / "resolv.conf").write_text("options ndots:5\n")
        (self.dir / "kubelet.yaml").write_text(json.dumps(self._kubelet_config(), indent=2))
        (self.dir / "kube-proxy.yaml").write_text(json.dumps(self._kube_proxy_config(), indent=2))
        (self.dir / "Corefile").write_text(self._corefile())

    def _serving_certificate(self) -> None:
        """The kubelet's serving certificate, signed by the cluster CA for the node IP."""
        cluster._sign(
            self.settings.pki,
            "kubelet-serving",
            f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            f"subjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\n",
        )

    def _containerd_config(self) -> str:
        d = self.dir / "containerd"
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        return f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

{cri}
  sandbox_image = "{PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE the kubelet's oom_score_adj of -998 is refused.
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.dir / "cni" / "net.d"}"
"""

    def _cni_config(self) -> str:
        return json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": CNI_NETWORK,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": POD_BRIDGE,
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_SUBNET}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(self.dir / "cni" / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )

    def _kubelet_config(self) -> dict:
        pki = self.settings.pki
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podCIDR": POD_SUBNET,
            "clusterDNS": [NODE_IP],
            "clusterDomain": cluster.CLUSTER_DOMAIN,
            "resolvConf": str(self.dir / "resolv.conf"),
            "podLogsDir": str(self.dir / "logs" / "pods"),
            # This machine's kernel and permissions (see docs/kubernetes.md).
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": False,
            "oomScoreAdj": 0,
            # A shared development disk: evict and collect images only when nearly full.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "serializeImagePulls": False,
            "maxPods": 60,
        }

    def _kube_proxy_config(self) -> dict:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.settings.state / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": cluster.POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # 0: leave the kernel's conntrack settings alone (they are not ours to change).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }

    def _corefile(self) -> str:
        kubeconfig = self.settings.state / "coredns.kubeconfig"
        return f"""\
.:53 {{
    bind {NODE_IP}
    errors
    ready {NODE_IP}:{DNS_READY_PORT}
    kubernetes {cluster.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} mnist-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""

    def volume_source(self, path: Path) -> dict:
        # A local volume, not hostPath: the kubelet applies a pod's fsGroup to it, so the
        # chart's non-root pods can write their claims.
        return {
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [NODE_NAME],
                                }
                            ]
                        }
                    ]
                }
            },
        }

    def register(self) -> None:
        pass  # the kubelet registers its Node itself

    # teardown
    def teardown(self) -> None:
        """Stop the node's processes and containers and leave the machine as before."""
        for name in ("coredns", "kube-proxy", "kubelet"):
            cluster.stop(self.settings, name)
        shims = _shims(self.socket)
        _kill(_descendants(shims))
        _kill(shims)
        cluster.stop(self.settings, "containerd")
        time.sleep(0.5)
        _unmount_under([self.dir])
        if shutil.which("ip"):
            network_down()
        created = self.dir / "created-paths.json"
        recorded = json.loads(created.read_text()) if created.exists() else []
        for path in recorded:
            if path == CGROUPS:
                _remove_cgroups(_cgroup_dirs())
            elif path == str(NETNS_DIR):
                _remove_netns_dir()
            else:
                shutil.rmtree(path, ignore_errors=True)
        left = self.leftovers(recorded)
        if left:
            raise ClusterError("the real node left these behind:\n  " + "\n  ".join(left))

    def leftovers(self, recorded: list[str]) -> list[str]:
        """What of the node is still on the machine (nothing, after a teardown)."""
        left = [f"process {pid} (a containerd shim)" for pid in _shims(self.socket)]
        left += [f"mount {p}" for p in _mount_points_under([self.dir])]
        if NETNS_PATH.exists():
            left.append(f"network namespace {NETNS}")
        if shutil.which("ip"):
            if _run("ip", "link", "show", HOST_VETH, check=False).returncode == 0:
                left.append(f"link {HOST_VETH}")
            routes = _run("ip", "route", "show", "via", NODE_IP, check=False).stdout.strip()
            left += [f"route {r}" for r in routes.splitlines()]
        for path in recorded:
            if path == CGROUPS:
                left += [f"cgroup {d}" for d in _cgroup_dirs()]
            elif Path(path).exists():
                left.append(f"path {path}")
        return left
