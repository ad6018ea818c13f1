"""The STAND-IN Cassandra image (Dockerfile.cassandra-standin), run as the chart runs it.

The image stands in for the official ``cassandra`` image where that cannot be pulled; the
chart's default stays the official one. Here the chart is rendered with its default values
(password authentication on) plus the retraining CronJob (so the roles Job also creates the
read-only role), pointed at the stand-in, and its pods are played with podman the way a
kubelet plays them:

- one network and UTS namespace per pod, held by a pause process (catatonit, podman's
  own pause binary, from a throwaway root directory) with a fixed address on podman's
  bridge and the pod's hostname, which the pod's containers join;
- the StatefulSet's init container, then its main container, with the rendered command,
  environment (the pod IP for ``status.podIP`` and ``$(POD_IP)``, Secret values from the
  rendered Secrets) and volume mounts: ConfigMaps as read-only directories of their
  scripts, emptyDirs and the data claim as empty host directories laid out as the kubelet
  lays them out (owned by root, world-writable, the fsGroup's with the setgid bit);
- every container's securityContext as podman flags: the numeric user, read-only root
  (``--read-only-tmpfs=false``: only the mounted volumes are writable), every capability
  dropped, no new privileges (podman's default seccomp profile stands for RuntimeDefault);
- the startup probe as a TCP connection to the pod's address, the exec probes and the
  preStop hook with ``podman exec``, as the kubelet runs them;
- the DNS names the chart uses (the seed's pod name, the client Service) as /etc/hosts
  entries of the pods that use them.

Then: the node comes up and is ``UN`` in ``nodetool status``, the readiness and liveness
commands pass, the chart's settings are in effect, the roles Job switches the superuser
password and creates the roles (twice: it is idempotent), the gateway's role creates its
keyspace and the schema hook's command runs with the chart's environment, logins without
the right password fail, the read-only role may only read, and a drained, restarted
container finds its data and roles again.
"""

from __future__ import annotations

import base64
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import WhiteListRoundRobinPolicy
from packaging.utils import canonicalize_name

from tests.chart.conftest import CHART, component, helm, parse, template  # noqa: F401 (fixture)
from tests.images.conftest import LIMITS, Image, image_tag, podman
from tests.support.dependencies import LIST_DISTRIBUTIONS, locked_versions, parse_listing
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until

APP_PASSWORD = f"app-{uuid.uuid4().hex}"
# A quote in the superuser's password: the roles script escapes CQL literals.
ADMIN_PASSWORD = f"adm'in-{uuid.uuid4().hex}"
READER_PASSWORD = f"reader-{uuid.uuid4().hex}"
# The node's start (an empty data directory) and restart on a loaded two-core machine.
START_TIMEOUT = 420
# One podman command. With vfs storage, creating a container copies the image's whole
# filesystem (minutes under load), and the podman CLI alone may take tens of seconds for
# an exec: its time is no measure of the image (probe durations are measured inside).
PODMAN_TIMEOUT = 900


@pytest.fixture(scope="module")
def cassandra_image() -> Image:
    ref = f"localhost/mnist-cassandra-standin:{image_tag()}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        pytest.fail(
            f"{ref} is not in podman's store: run "
            f"`scripts/images/build.sh {image_tag()} cassandra-standin`",
            pytrace=False,
        )
    return Image(ref)


# --- the image itself ---------------------------------------------------------------------


def pinned_cassandra_version() -> str:
    """The release the local node runs: scripts/cassandra/pom.xml's cassandra.version."""
    pom = ElementTree.parse(REPO_ROOT / "scripts" / "cassandra" / "pom.xml")
    version = pom.findtext(
        "pom:properties/pom:cassandra.version",
        namespaces={"pom": "http://maven.apache.org/POM/4.0.0"},
    )
    assert version
    return version


def test_image_stands_in_for_the_charts_official_image(cassandra_image):
    """Labelled as a stand-in, for the release the chart's default image runs, and set up as
    that image is: its user, entrypoint, command and directories."""
    version = pinned_cassandra_version()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["images"]["cassandra"] == {
        "repository": "cassandra",
        "tag": version,
        "digest": "",
        "pullPolicy": "IfNotPresent",
    }
    config = yaml.safe_load(
        podman("image", "inspect", "--format", "{{json .Config}}", cassandra_image.ref).stdout
    )
    assert config["Labels"]["standin-for"] == f"cassandra:{version}"
    assert "STAND-IN" in config["Labels"]["org.opencontainers.image.description"]
    assert config["User"] == "999:999"
    assert config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert config["Cmd"] == ["cassandra", "-f"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["CASSANDRA_HOME"] == "/opt/cassandra"
    assert env["CASSANDRA_CONF"] == "/etc/cassandra"
    assert env["PATH"].startswith("/opt/cassandra/bin:")

    root = Path(podman("image", "mount", cassandra_image.ref).stdout.strip())
    try:
        home = root / "opt" / "cassandra"
        for link, target in (("conf", "/etc/cassandra"), ("data", "/var/lib/cassandra")):
            assert os.readlink(home / link) == target
        assert os.readlink(home / "logs") == "/var/log/cassandra"
        for directory in ("etc/cassandra", "var/lib/cassandra", "var/log/cassandra"):
            info = (root / directory).stat()
            assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (999, 999, 0o1777)
        assert (root / "etc" / "cassandra" / "triggers").is_dir()
        lib = Path(os.environ.get("CACHE_DIR") or "~/.cache/mnist-serving").expanduser()
        local_jars = sorted(p.name for p in (lib / f"cassandra-{version}" / "lib").glob("*.jar"))
        assert local_jars, "the local node's jars are not resolved: run `make cassandra-up`"
        assert sorted(p.name for p in (home / "lib").iterdir()) == local_jars
        for name in ("cassandra", "nodetool"):
            assert (home / "bin" / name).stat().st_mode & 0o111
        assert os.readlink(home / "bin" / "cqlsh") == "/opt/cqlsh/bin/cqlsh"
    finally:
        podman("image", "unmount", cassandra_image.ref, check=False)


# --- the chart's pods, played with podman ---------------------------------------------------


@dataclass
class Chart:
    objects: list[dict]

    def secret(self, name: str, key: str) -> str:
        (secret,) = [
            o for o in self.objects if o["kind"] == "Secret" and o["metadata"]["name"] == name
        ]
        return base64.b64decode(secret["data"][key]).decode()

    def config_map(self, name: str) -> dict[str, str]:
        (config_map,) = [
            o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
        ]
        return config_map["data"]


@pytest.fixture(scope="module")
def chart(helm, cassandra_image, tmp_path_factory) -> Chart:  # noqa: F811 (fixture)
    repository, tag = cassandra_image.ref.rsplit(":", 1)
    values = tmp_path_factory.mktemp("values") / "standin-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "images": {"cassandra": {"repository": repository, "tag": tag}},
                "cassandra": {"auth": {"password": APP_PASSWORD, "adminPassword": ADMIN_PASSWORD}},
                "training": {
                    "cronJob": {"enabled": True},
                    "feedback": {"password": READER_PASSWORD},
                },
            }
        )
    )
    return Chart(parse(template(helm, "--values", str(values)).stdout))


def fixed_address() -> str:
    """An address on podman's default bridge (10.88.0.0/16), away from the ones it hands out
    in order from the bottom; podman refuses one already held (then another is tried)."""
    return f"10.88.{random.randint(200, 250)}.{random.randint(2, 254)}"


@dataclass
class Pod:
    """A pod of the chart: its spec, its network namespace, its volumes on the host."""

    name: str
    spec: dict
    chart: Chart
    volumes: dict[str, Path]
    hostname: str = ""
    hosts: dict[str, str] = field(default_factory=dict)
    address: str = ""
    containers: list[str] = field(default_factory=list)

    @property
    def holder(self) -> str:
        return f"{self.name}-pause"

    def start_network(self, pause_root: Path) -> None:
        """The pod's network and UTS namespaces, held by a pause process as a pod's are."""
        for _ in range(5):
            self.address = fixed_address()
            started = podman(
                "run",
                "--detach",
                "--name",
                self.holder,
                *LIMITS,
                "--ip",
                self.address,
                "--hostname",
                self.hostname or self.name,
                *(f"--add-host={n}:{a or self.address}" for n, a in self.hosts.items()),
                *self.security_flags(self.spec["containers"][0]),
                "--rootfs",
                str(pause_root),
                "/catatonit",
                "-P",
                check=False,
            )
            if started.returncode == 0:
                self.containers.append(self.holder)
                return
            podman("rm", "--force", self.holder, check=False)
        raise AssertionError(f"no address for {self.name}: {started.stderr}")

    def security_flags(self, container: dict) -> list[str]:
        pod_context = self.spec["securityContext"]
        context = container["securityContext"]
        # What the flags below stand for; anything else would go unchecked.
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
        return [
            "--user",
            f"{context['runAsUser']}:{context['runAsGroup']}",
            "--group-add",
            str(pod_context["fsGroup"]),
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        ]

    def env(self, container: dict) -> dict[str, str]:
        """The container's environment as the kubelet makes it."""
        env: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), item["value"])
            elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "status.podIP":
                value = self.address
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                value = self.chart.secret(ref["name"], ref["key"])
            env[item["name"]] = value
        return env

    def run(
        self, container: dict, *, detach: bool, name: str, create_only: bool = False
    ) -> subprocess.CompletedProcess:
        """A container of the pod: the image's entrypoint unless the spec gives a command."""
        command = container.get("command", [])
        flags = [
            *LIMITS,
            "--network",
            f"container:{self.holder}",
            "--uts",
            f"container:{self.holder}",
            *self.security_flags(container),
            *(f"--env={k}={v}" for k, v in self.env(container).items()),
            *(
                f"--volume={self.volumes[m['name']]}:{m['mountPath']}:"
                f"{'ro' if m.get('readOnly') else 'rw'}"
                for m in container.get("volumeMounts", [])
            ),
        ]
        if command:
            flags += ["--entrypoint", command[0]]
        self.containers.append(name)
        return podman(
            "create" if create_only else "run",
            *(("--detach",) if detach else ()),
            "--name",
            name,
            *flags,
            container["image"],
            *command[1:],
            *container.get("args", []),
            timeout=PODMAN_TIMEOUT,
            check=False,
        )

    def remove(self) -> None:
        for name in reversed(self.containers):
            podman("rm", "--force", "--time", "30", name, check=False)


def volume_dirs(spec: dict, chart: Chart, root: Path, claims: Sequence[str]) -> dict[str, Path]:
    """Host directories for the pod's volumes, as the kubelet sets them up: ConfigMaps hold
    their files (mounted read-only); emptyDirs and claims are empty, owned by root, world
    writable, their group the fsGroup with the setgid bit."""
    group = spec["securityContext"]["fsGroup"]
    dirs = {}
    for volume in [*spec.get("volumes", []), *({"name": c, "claim": True} for c in claims)]:
        path = root / volume["name"]
        path.mkdir()
        if "configMap" in volume:
            for key, text in chart.config_map(volume["configMap"]["name"]).items():
                (path / key).write_text(text)
        else:
            assert "emptyDir" in volume or volume.get("claim"), volume
            os.chown(path, 0, group)
            path.chmod(0o2777)
        dirs[volume["name"]] = path
    return dirs


def logs(name: str) -> str:
    result = podman("logs", "--tail", "60", name, check=False)
    return (result.stdout + result.stderr)[-6000:]


def exec_in(name: str, *command: str) -> subprocess.CompletedProcess:
    return podman("exec", name, *command, timeout=PODMAN_TIMEOUT, check=False)


@dataclass
class Node:
    pod: Pod
    statefulset: dict
    container: dict
    name: str

    @property
    def address(self) -> str:
        return self.pod.address


@pytest.fixture(scope="module")
def pause_root(tmp_path_factory) -> Path:
    """A root directory holding only podman's pause binary (statically linked)."""
    catatonit = shutil.which("catatonit") or "/usr/libexec/podman/catatonit"
    assert Path(catatonit).is_file(), "no catatonit (podman's pause binary, a Debian package)"
    root = tmp_path_factory.mktemp("pause-root")
    shutil.copy(catatonit, root / "catatonit")
    root.chmod(0o755)  # the pod's user starts it
    return root


@pytest.fixture(scope="module")
def node(chart, pause_root, tmp_path_factory) -> Iterator[Node]:
    """Pod 0 of the StatefulSet: the init container, then Cassandra (the image's CMD)."""
    statefulset = component(chart.objects, "StatefulSet", "cassandra")
    spec = statefulset["spec"]["template"]["spec"]
    pod_name = f"{statefulset['metadata']['name']}-0"
    headless = statefulset["spec"]["serviceName"]
    (seeds,) = [e["value"] for e in spec["containers"][0]["env"] if e["name"] == "CASSANDRA_SEEDS"]
    assert seeds.startswith(f"{pod_name}.{headless}.")
    claims = [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]]
    pod = Pod(
        name=f"standin-{pod_name}-{uuid.uuid4().hex[:8]}",
        spec=spec,
        chart=chart,
        volumes=volume_dirs(spec, chart, tmp_path_factory.mktemp("cassandra-pod"), claims),
        hostname=pod_name,
        # The pod's own DNS name, the seed: this pod.
        hosts={seeds: ""},
    )
    (init,) = spec["initContainers"]
    (main,) = spec["containers"]
    try:
        pod.start_network(pause_root)
        prepared = pod.run(init, detach=False, name=f"{pod.name}-{init['name']}")
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        name = f"{pod.name}-{main['name']}"
        started = pod.run(main, detach=True, name=name)
        assert started.returncode == 0, started.stderr
        yield Node(pod, statefulset, main, name)
    finally:
        for container in pod.containers[1:]:
            print(f"--- {container}\n{logs(container)}")
        pod.remove()


def probe(node: Node, kind: str) -> tuple[int, float]:
    """Run a probe's command as the kubelet does; its exit code and its duration, measured in
    the container (the podman CLI's own time is no part of it)."""
    command = " ".join(shlex.quote(c) for c in node.container[kind]["exec"]["command"])
    timed = exec_in(
        node.name,
        "bash",
        "-c",
        f"start=$(date +%s%N); {command} >/dev/null 2>&1; code=$?; "
        'echo "$code $(( ($(date +%s%N) - start) / 1000000 ))"',
    )
    code, millis = timed.stdout.split()[-2:]
    return int(code), int(millis) / 1000


def wait_ready(node: Node) -> None:
    """As the kubelet does after each start of the container: the startup probe (a TCP
    connection to the named port) until it passes, then the readiness command."""

    def running() -> None:
        state = podman("inspect", "--format", "{{.State.Status}}", node.name, check=False)
        if state.stdout.strip() != "running":
            raise AssertionError(f"the Cassandra container stopped:\n{logs(node.name)}")

    port_name = node.container["startupProbe"]["tcpSocket"]["port"]
    (port,) = [p["containerPort"] for p in node.container["ports"] if p["name"] == port_name]

    def started() -> bool:
        running()
        try:
            socket.create_connection((node.address, port), timeout=2).close()
        except OSError:
            return False
        return True

    def ready() -> bool:
        running()
        return probe(node, "readinessProbe")[0] == 0

    wait_until(started, timeout=START_TIMEOUT, interval=2, what="the startup probe to pass")
    wait_until(ready, timeout=START_TIMEOUT, interval=5, what="the readiness probe to pass")


def test_node_comes_up_as_the_chart_runs_it(node):
    wait_ready(node)
    status = exec_in(node.name, "nodetool", "status")
    assert status.returncode == 0, status.stderr
    assert re.search(rf"^UN\s+{re.escape(node.address)}\s", status.stdout, re.M), status.stdout
    assert "Datacenter: dc1" in status.stdout
    # Each probe passes within its timeout (nodetool starts a JVM every time).
    for kind in ("readinessProbe", "livenessProbe"):
        code, seconds = probe(node, kind)
        assert code == 0, kind
        assert seconds < node.container[kind]["timeoutSeconds"], (kind, seconds)

    # The chart's settings, through the entrypoint and the init container.
    settings = yaml.safe_load(exec_in(node.name, "cat", "/etc/cassandra/cassandra.yaml").stdout)
    assert settings["cluster_name"] == "mnist"
    assert settings["listen_address"] == node.address
    assert settings["broadcast_rpc_address"] == node.address
    assert settings["rpc_address"] == "0.0.0.0"
    assert settings["endpoint_snitch"] == "GossipingPropertyFileSnitch"
    assert settings["num_tokens"] == 16
    (seeds,) = [e["value"] for e in node.container["env"] if e["name"] == "CASSANDRA_SEEDS"]
    assert settings["seed_provider"][0]["parameters"][0]["seeds"] == seeds
    assert settings["authenticator"] == "PasswordAuthenticator"
    assert settings["authorizer"] == "CassandraAuthorizer"
    assert settings["commitlog_sync"] == "group"
    assert settings["commitlog_sync_group_window"] == "5ms"
    assert "commitlog_sync_period" not in settings
    rackdc = exec_in(node.name, "cat", "/etc/cassandra/cassandra-rackdc.properties").stdout
    assert re.search(r"^dc=dc1$", rackdc, re.M) and re.search(r"^rack=rack1$", rackdc, re.M)
    # The heap from MAX_HEAP_SIZE; the JVM runs as the chart's user, without privileges.
    java = exec_in(node.name, "bash", "-c", "tr '\\0' ' ' </proc/1/cmdline").stdout
    assert " -Xmx1G " in java and " -Xms1G " in java and "CassandraDaemon" in java
    fields = dict(
        line.split(":\t", 1)
        for line in exec_in(node.name, "cat", "/proc/1/status").stdout.splitlines()
        if ":\t" in line
    )
    assert fields["Uid"].split()[0] == "999"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    written = exec_in(node.name, "touch", "/opt/cassandra/x")
    assert written.returncode != 0
    assert "Read-only file system" in written.stdout + written.stderr
    # Data and logs went to the chart's volumes.
    assert (node.pod.volumes["data"] / "commitlog").is_dir()
    assert (node.pod.volumes["logs"] / "system.log").is_file()


def test_node_runs_the_jars_of_the_local_node_on_java_17_with_cqlsh(node):
    """The release the local node runs, on Debian's Java 17; cqlsh holds exactly its lock."""
    versions = exec_in(
        node.name, "bash", "-c", "cassandra -v; java -version 2>&1 | head -1; cqlsh --version"
    )
    assert versions.returncode == 0, versions.stderr
    cassandra, java, cqlsh = versions.stdout.splitlines()
    assert cassandra == pinned_cassandra_version()
    assert re.match(r'openjdk version "17\.', java), java
    assert cqlsh == "cqlsh 6.2.2"

    listing = exec_in(node.name, "/opt/cqlsh/bin/python", "-c", LIST_DISTRIBUTIONS)
    environment, distributions = parse_listing(listing.stdout)
    installed = {canonicalize_name(n): d["version"] for n, d in distributions.items()}
    assert installed.pop("pip") is not None
    assert installed == locked_versions("cqlsh", environment)


def cql_session(address: str, username: str | None, password: str | None):
    auth = PlainTextAuthProvider(username, password) if username else None
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([address]), request_timeout=60
    )
    cluster = Cluster(
        [address],
        auth_provider=auth,
        connect_timeout=15,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()
        raise


@pytest.fixture(scope="module")
def roles_job(chart, node, pause_root, tmp_path_factory) -> Iterator[str]:
    """The roles Job's pod, created (not started): the client Service's name is the node."""
    job = component(chart.objects, "Job", "cassandra-roles")
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    service = next(e["value"] for e in container["env"] if e["name"] == "CASSANDRA_HOST")
    pod = Pod(
        name=f"standin-roles-{uuid.uuid4().hex[:8]}",
        spec=spec,
        chart=chart,
        volumes=volume_dirs(spec, chart, tmp_path_factory.mktemp("roles-pod"), ()),
        hosts={service: node.address},
    )
    name = f"{pod.name}-{container['name']}"
    try:
        pod.start_network(pause_root)
        created = pod.run(container, detach=False, name=name, create_only=True)
        assert created.returncode == 0, created.stderr
        yield name
    finally:
        pod.remove()


def run_job(name: str) -> subprocess.CompletedProcess:
    return podman("start", "--attach", name, timeout=PODMAN_TIMEOUT, check=False)


def test_roles_job_switches_on_authentication(node, roles_job):
    wait_ready(node)
    # Password authentication is on: nobody gets in without logging in.
    with pytest.raises(NoHostAvailable):
        cql_session(node.address, None, None)

    first = run_job(roles_job)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Replacing the default superuser password" in first.stdout
    assert "Ensuring role mnist" in first.stdout
    assert "Ensuring read-only role mnist_reader on keyspace mnist" in first.stdout
    # Idempotent: a second run (a password rotation, a Job created again) changes nothing.
    again = run_job(roles_job)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Replacing the default superuser password" not in again.stdout

    for username, password in (("cassandra", "cassandra"), ("mnist", "wrong")):
        with pytest.raises(NoHostAvailable):
            cql_session(node.address, username, password)
    cluster, admin = cql_session(node.address, "cassandra", ADMIN_PASSWORD)
    try:
        replication = admin.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'system_auth'"
        ).one()
        assert replication.replication["class"].endswith("SimpleStrategy")
        assert replication.replication["replication_factor"] == "1"
        roles = {r.role for r in admin.execute("SELECT role FROM system_auth.roles")}
        assert {"cassandra", "mnist", "mnist_reader"} <= roles
    finally:
        cluster.shutdown()


def test_app_role_creates_its_keyspace_with_cqlsh_and_the_schema_command(chart, node):
    wait_ready(node)
    keyspace = f"standin_{uuid.uuid4().hex[:8]}"
    created = exec_in(
        node.name,
        "cqlsh",
        node.address,
        "9042",
        "-u",
        "mnist",
        "-p",
        APP_PASSWORD,
        "-e",
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}; "
        f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v text); "
        f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 'one'); "
        f"SELECT v FROM {keyspace}.t WHERE k = 1;",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert re.search(r"^\s+one$", created.stdout, re.M), created.stdout

    # The schema hook's command with the hook's rendered environment (the Service name is
    # the node's address here), from this checkout as the gateway image runs it.
    hook = component(chart.objects, "Job", "schema")
    hook_spec = hook["spec"]["template"]["spec"]
    (container,) = hook_spec["containers"]
    env = Pod("schema", hook_spec, chart, {}, address=node.address).env(container)
    env["CASSANDRA_HOSTS"] = node.address
    assert env["CASSANDRA_USERNAME"] == "mnist"
    schema = subprocess.run(
        [sys.executable, "-m", "gateway.store.schema", "--wait", "120"],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "table mnist.predictions" in schema.stdout

    # The read-only role reads the gateway's keyspace and may create nothing.
    cluster, reader = cql_session(node.address, "mnist_reader", READER_PASSWORD)
    try:
        assert reader.execute("SELECT * FROM mnist.predictions LIMIT 1").all() == []
        with pytest.raises(Unauthorized):
            reader.execute(
                f"CREATE KEYSPACE {keyspace}_r WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
    finally:
        cluster.shutdown()


def test_drained_node_restarts_with_its_data(node):
    """preStop drains; the container restarts on the same volumes and finds its data."""
    wait_ready(node)
    drained = exec_in(node.name, *node.container["lifecycle"]["preStop"]["exec"]["command"])
    assert drained.returncode == 0, drained.stderr
    assert "Mode: DRAINED" in exec_in(node.name, "nodetool", "netstats").stdout
    grace = node.statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    podman("stop", "--time", str(grace), node.name, timeout=PODMAN_TIMEOUT)
    podman("start", node.name, timeout=PODMAN_TIMEOUT)
    wait_ready(node)
    cluster, session = cql_session(node.address, "mnist", APP_PASSWORD)
    try:
        tables = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'mnist'"
        )
        assert {"predictions", "prediction_days"} <= {r.table_name for r in tables}
    finally:
        cluster.shutdown()
