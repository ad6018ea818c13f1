"""Run local Apache Cassandra 5.0 nodes from Maven Central jars: one on 127.0.0.1:9042, or
a cluster of several on their own loopback addresses (127.0.0.11, .12, ...: port 9042 each).

    cassandra_node.py up [--nodes N]          start (idempotent), wait until each answers CQL
    cassandra_node.py down [--nodes N]        stop: SIGTERM, then SIGKILL after a grace period
    cassandra_node.py status [--nodes N]      whether each answers; exit 0 if all do, 3 if not
    cassandra_node.py stop --nodes N --node I [--kill]    stop one node of the cluster
                                                          (--kill: SIGKILL, as a crash)
    cassandra_node.py start --nodes N --node I            start one node of the cluster again

No tarball can be downloaded here, so Maven resolves ``cassandra-all`` and its runtime
jars (scripts/cassandra/pom.xml) into ``$CACHE_DIR/cassandra-<version>/lib`` once; the
node then runs with the project's own cassandra.yaml, logback config and Java 17 options
(scripts/cassandra/). A node's data, commit log, hints, caches, log and pid file live in
``$STATE_DIR/cassandra`` (one node) or ``$STATE_DIR/cassandra-<N>nodes/node<I>``. Relative
directories are taken from the repo root, as the Makefile means them.

The nodes of a cluster share one seed (the first), hold one token each, evenly spaced,
and start as a new cluster (``auto_bootstrap: false``): the gateway's keyspace then
replicates to all of them with replication factor N.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from xml.etree import ElementTree

from cassandra import ProtocolVersion
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import WhiteListRoundRobinPolicy

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
HOST = "127.0.0.1"
# Node I of a cluster listens on 127.0.0.(CLUSTER_ADDRESS_BASE + I), beside the lone node.
CLUSTER_ADDRESS_BASE = 10
CQL_PORT = 9042
START_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 60.0
# Cassandra 5.0 runs on Java 11 and 17, not on newer ones.
SUPPORTED_JAVA_MAJORS = (11, 17)
LOG_TAIL_LINES = 40
EXIT_NOT_RUNNING = 3

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "scripts" / "cassandra"
POM = TEMPLATES / "pom.xml"


def _pinned_version() -> str:
    """The Cassandra version is pinned in one place: the pom's ``cassandra.version``."""
    namespace = {"pom": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(POM).findtext(
        "pom:properties/pom:cassandra.version", namespaces=namespace
    )
    if not version:
        raise RuntimeError(f"{POM} has no cassandra.version property")
    return version


CASSANDRA_VERSION = _pinned_version()


class NodeError(RuntimeError):
    """The node could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class NodePaths:
    lib: Path  # resolved jars, shared by every checkout on the machine
    home: Path  # this checkout's node: data, commitlog, hints, caches, conf, logs
    address: str = HOST
    seed: str = HOST
    initial_token: int = 0
    cluster_name: str = "mnist-serving-local"

    @classmethod
    def from_env(cls, nodes: int = 1, index: int = 1) -> NodePaths:
        """Node ``index`` (from 1) of a local cluster of ``nodes``."""
        cache = _repo_relative(os.environ.get("CACHE_DIR") or "~/.cache/mnist-serving")
        state = _repo_relative(os.environ.get("STATE_DIR") or ".cache")
        lib = cache / f"cassandra-{CASSANDRA_VERSION}" / "lib"
        if nodes == 1:
            return cls(lib=lib, home=state / "cassandra")
        return cls(
            lib=lib,
            home=state / f"cassandra-{nodes}nodes" / f"node{index}",
            address=cluster_address(index),
            seed=cluster_address(1),
            initial_token=spaced_token(index - 1, nodes),
            cluster_name=f"mnist-serving-local-{nodes}nodes",
        )

    @property
    def lib_stamp(self) -> Path:
        return self.lib.parent / "lib.stamp"

    @property
    def config_file(self) -> Path:
        return self.home / "conf" / "cassandra.yaml"

    @property
    def triggers_dir(self) -> Path:
        # Cassandra warns on every schema change when its trigger directory is missing.
        return self.home / "triggers"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "cassandra.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "cassandra.pid"

    @property
    def lock_file(self) -> Path:
        return self.home / "node.lock"


def cluster_address(index: int) -> str:
    return f"127.0.0.{CLUSTER_ADDRESS_BASE + index}"


def spaced_token(position: int, nodes: int) -> int:
    """Murmur3 token ``position`` of ``nodes`` evenly spaced ones (the first is 0)."""
    span = 2**64
    return (position * (span // nodes) + 2**63) % span - 2**63


def _repo_relative(raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


# --- jars --------------------------------------------------------------------------------


def resolve_jars(paths: NodePaths) -> None:
    """Copy cassandra-all and its runtime dependencies into ``paths.lib`` unless done.

    The stamp records the pom's digest, so editing the pom re-resolves. Jars land in a
    scratch directory first: an interrupted run never leaves a half-filled lib dir behind.
    """
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if paths.lib_stamp.exists() and paths.lib_stamp.read_text().strip() == digest:
        return
    print(f"Resolving Cassandra {CASSANDRA_VERSION} jars with Maven into {paths.lib} ...")
    scratch = paths.lib.with_name("lib.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
    ]
    # Quiet Maven still writes terminal escapes here: keep its output for failures only.
    maven = subprocess.run(command, capture_output=True, text=True, check=False)
    if maven.returncode != 0:
        raise NodeError(
            f"Maven could not resolve the Cassandra jars:\n{maven.stdout}{maven.stderr}"
        )
    shutil.rmtree(paths.lib, ignore_errors=True)
    scratch.rename(paths.lib)
    paths.lib_stamp.write_text(digest + "\n")


def jamm_agent(lib: Path) -> Path:
    """Cassandra measures object sizes with the jamm agent; it refuses to start without it."""
    agents = sorted(lib.glob("jamm-*.jar"))
    if not agents:
        raise NodeError(f"no jamm jar in {lib}; delete {lib.parent} and try again")
    return agents[-1]


# --- configuration -------------------------------------------------------------------


def write_config(paths: NodePaths) -> None:
    template = Template((TEMPLATES / "cassandra.yaml.template").read_text())
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.triggers_dir.mkdir(exist_ok=True)
    paths.config_file.write_text(
        template.substitute(
            cassandra_dir=paths.home,
            address=paths.address,
            seed=paths.seed,
            initial_token=paths.initial_token,
            cluster_name=paths.cluster_name,
        )
    )


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise NodeError("no java on PATH; Cassandra 5.0 needs Java 17 (or 11)")
    banner = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', banner)
    major = int(match.group(1)) if match else 0
    if major not in SUPPORTED_JAVA_MAJORS:
        raise NodeError(f"Cassandra 5.0 needs Java 17 (or 11); {java} is {banner.strip()!r}")
    return java


def jvm_options() -> list[str]:
    lines = (TEMPLATES / "jvm17.options").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def java_command(paths: NodePaths) -> list[str]:
    return [
        java_executable(),
        *jvm_options(),
        f"-javaagent:{jamm_agent(paths.lib)}",
        f"-Dcassandra.config=file://{paths.config_file}",
        f"-Dcassandra.storagedir={paths.home}",
        f"-Dcassandra.logdir={paths.log_file.parent}",
        f"-Dcassandra.triggers_dir={paths.triggers_dir}",
        f"-Dlogback.configurationFile=file://{TEMPLATES / 'logback.xml'}",
        "-cp",
        f"{paths.lib}/*",
        MAIN_CLASS,
    ]


# --- process -------------------------------------------------------------------------


def running_pid(paths: NodePaths) -> int | None:
    """The pid of this state dir's node if that process is alive and still Cassandra."""
    try:
        pid = int(paths.pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    # A pid is reused after its process is gone: make sure it is still our daemon.
    return pid if MAIN_CLASS.encode() in cmdline else None


def log_tail(paths: NodePaths) -> str:
    try:
        lines = paths.log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def launch(paths: NodePaths) -> subprocess.Popen[bytes]:
    """Start the JVM detached: its own session, so it outlives this script and the shell."""
    command = java_command(paths)
    paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    with paths.log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=paths.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    paths.pid_file.write_text(f"{process.pid}\n")
    return process


def terminate(pid: int) -> None:
    """SIGTERM lets Cassandra drain its memtables; SIGKILL only if it does not exit in time."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_for_exit(pid, STOP_GRACE_SECONDS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_for_exit(pid, 10.0)


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.2)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The state letter follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] == "Z"


# --- CQL probe -----------------------------------------------------------------------


def release_version(address: str = HOST, timeout: float = 5.0) -> str | None:
    """The node's ``release_version``, or None when nothing answers CQL on the port yet."""
    # A plain TCP check first: it is instant, and keeps the driver from logging a
    # connection error on every poll while the JVM boots.
    try:
        socket.create_connection((address, CQL_PORT), timeout=1.0).close()
    except OSError:
        return None
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([address]), request_timeout=timeout
    )
    cluster = Cluster(
        [address],
        port=CQL_PORT,
        protocol_version=ProtocolVersion.V5,
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return row.release_version
    except (NoHostAvailable, OSError):
        return None
    finally:
        cluster.shutdown()


def wait_until_answering(paths: NodePaths, process: subprocess.Popen[bytes] | None) -> str:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise NodeError(
                f"Cassandra exited with code {process.returncode} while starting. "
                f"Last lines of {paths.log_file}:\n{log_tail(paths)}"
            )
        version = release_version(paths.address)
        if version is not None:
            return version
        time.sleep(1.0)
    raise NodeError(
        f"Cassandra did not answer on {paths.address}:{CQL_PORT} "
        f"within {START_TIMEOUT_SECONDS:.0f} s. "
        f"Last lines of {paths.log_file}:\n{log_tail(paths)}"
    )


# --- commands ------------------------------------------------------------------------


@contextlib.contextmanager
def node_lock(paths: NodePaths) -> Iterator[None]:
    """Serialise up/down of one state dir: two `make cassandra-up` give one node."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(paths: NodePaths) -> None:
    with node_lock(paths):
        pid = running_pid(paths)
        where = f"{paths.address}:{CQL_PORT}"
        if pid is not None:
            version = wait_until_answering(paths, process=None)
            print(f"Cassandra {version} already running on {where} (pid {pid})")
            return
        version = release_version(paths.address)
        if version is not None:
            print(f"Cassandra {version} already answers on {where} (not started here)")
            return
        resolve_jars(paths)
        write_config(paths)
        print(f"Starting Cassandra {CASSANDRA_VERSION} on {where}; log: {paths.log_file}")
        started = time.monotonic()
        process = launch(paths)
        try:
            version = wait_until_answering(paths, process)
        except NodeError:
            terminate(process.pid)
            paths.pid_file.unlink(missing_ok=True)
            raise
        print(
            f"Cassandra {version} answers on {where} "
            f"(pid {process.pid}, started in {time.monotonic() - started:.0f} s)"
        )


def down(paths: NodePaths, *, kill: bool = False) -> None:
    with node_lock(paths):
        pid = running_pid(paths)
        where = f"{paths.address}:{CQL_PORT}"
        if pid is None:
            paths.pid_file.unlink(missing_ok=True)
            if release_version(paths.address) is not None:
                raise NodeError(f"a node answers on {where} but was not started from {paths.home}")
            print(f"Cassandra on {where} is not running")
            return
        if kill:
            print(f"Killing Cassandra on {where} (pid {pid}, SIGKILL) ...")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, 10.0)
        else:
            print(f"Stopping Cassandra on {where} (pid {pid}) ...")
            terminate(pid)
        paths.pid_file.unlink(missing_ok=True)
        print(f"Cassandra on {where} stopped")


def status(paths: NodePaths) -> int:
    version = release_version(paths.address)
    pid = running_pid(paths)
    where = f"{paths.address}:{CQL_PORT}"
    if version is None:
        state = f"starting (pid {pid})" if pid else "not running"
        print(f"Cassandra on {where}: {state}")
        return EXIT_NOT_RUNNING
    owner = f"pid {pid}" if pid else "not started from this state dir"
    print(f"Cassandra {version} answers on {where} ({owner})")
    return 0


def cluster_up(nodes: int) -> None:
    """The seed first; the others then join it (each waits for its own node)."""
    for index in range(1, nodes + 1):
        up(NodePaths.from_env(nodes, index))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "stop", "start"))
    parser.add_argument("--nodes", type=int, default=1, help="nodes in the cluster (default 1)")
    parser.add_argument("--node", type=int, help="with stop/start: which node, from 1")
    parser.add_argument("--kill", action="store_true", help="with stop: SIGKILL, as a crash")
    args = parser.parse_args(argv)
    if args.nodes < 1 or (args.node is not None and not 1 <= args.node <= args.nodes):
        parser.error("--node must be between 1 and --nodes")
    if args.command in ("stop", "start") and args.node is None:
        parser.error(f"{args.command} needs --node")
    every = [NodePaths.from_env(args.nodes, index) for index in range(1, args.nodes + 1)]
    try:
        if args.command == "up":
            cluster_up(args.nodes)
        elif args.command == "down":
            for paths in reversed(every):
                down(paths)
        elif args.command == "stop":
            down(every[args.node - 1], kill=args.kill)
        elif args.command == "start":
            up(every[args.node - 1])
        else:
            return max(status(paths) for paths in every)
    except NodeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
