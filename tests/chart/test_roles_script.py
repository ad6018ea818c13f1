"""The roles Job's script, run by bash against a cqlsh double that fails on cue.

tests/images/test_cassandra_image.py runs the same script in the Cassandra image against
a real node, where a node that has just started refused the default superuser's login a
moment after accepting it. A real node cannot be made to fail one chosen statement, so
those failures (a login or connection refused, an answer lost after the statement landed)
are played here by CQLSH_DOUBLE: a stand-in for cqlsh that keeps the roles' passwords in
a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import template, values_file

ADMIN_PASSWORD = "adm'in"  # a quote, to prove the CQL literal escaping
ENV = {
    "CASSANDRA_HOST": "ci-mnist-cassandra",
    "APP_USERNAME": "mnist",
    "APP_PASSWORD": "app-secret",
    "ADMIN_PASSWORD": ADMIN_PASSWORD,
    "AUTH_REPLICATION": "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    "KEYSPACE": "mnist",
    "READER_USERNAME": "mnist_reader",
    "READER_PASSWORD": "reader-secret",
}

# The double: `cqlsh HOST PORT [--options] -u USER -p PASSWORD -e STATEMENT`. Each fault
# {"match", "times", "lands"} fails the next `times` calls whose statement contains
# `match`, like a lost connection; with "lands" the statement takes effect first.
CQLSH_DOUBLE = r"""
import json, re, sys
args = sys.argv[1:]
user, password, statement = (args[args.index(flag) + 1] for flag in ("-u", "-p", "-e"))
path = __STATE__
with open(path) as f:
    state = json.load(f)
state["calls"].append({"user": user, "statement": " ".join(statement.split())})

def apply():
    altered = re.match(r"\s*ALTER ROLE cassandra WITH PASSWORD = '((?:[^']|'')*)'", statement)
    if altered:
        state["passwords"]["cassandra"] = altered.group(1).replace("''", "'")

def save():
    with open(path, "w") as f:
        json.dump(state, f)

if state["passwords"].get(user) != password:
    save()
    sys.exit("Connection error: ('Unable to connect to any servers', "
             "{'10.0.0.1:9042': AuthenticationFailed('Bad credentials')})")
for fault in state["faults"]:
    if fault["match"] in statement and fault["times"] > 0:
        fault["times"] -= 1
        if fault["lands"]:
            apply()
        save()
        sys.exit("Connection error: ('Unable to connect to any servers', ['10.0.0.1'])")
apply()
save()
"""


@pytest.fixture(scope="module")
def script(helm, tmp_path_factory) -> Path:
    """ensure-roles.sh as the chart renders it."""
    rendered = template(
        helm,
        "--values",
        str(values_file("default")),
        "--show-only",
        "templates/cassandra/roles-configmap.yaml",
    ).stdout
    path = tmp_path_factory.mktemp("roles") / "ensure-roles.sh"
    path.write_text(yaml.safe_load(rendered)["data"]["ensure-roles.sh"])
    return path


def run(script: Path, tmp_path: Path, *, faults=(), admin="cassandra", wait_seconds=120):
    """Run the script once; returns (result, the double's state afterwards)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    state = tmp_path / "cluster.json"
    # A second run finds the passwords the first one left.
    passwords = (
        json.loads(state.read_text())["passwords"] if state.exists() else {"cassandra": admin}
    )
    state.write_text(json.dumps({"passwords": passwords, "faults": list(faults), "calls": []}))
    cqlsh = bin_dir / "cqlsh"
    cqlsh.write_text(f"#!{sys.executable}\n" + CQLSH_DOUBLE.replace("__STATE__", repr(str(state))))
    # The script waits 5 s between tries; against the double a twentieth of a second does.
    (bin_dir / "sleep").write_text("#!/bin/sh\nexec /bin/sleep 0.05\n")
    for tool in (cqlsh, bin_dir / "sleep"):
        tool.chmod(0o755)
    env = {
        **ENV,
        "WAIT_SECONDS": str(wait_seconds),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    after = json.loads(state.read_text())
    return result, after


def statements(state: dict, prefix: str) -> list[dict]:
    return [c for c in state["calls"] if c["statement"].startswith(prefix)]


def test_first_start_replaces_the_default_password_and_creates_the_roles(script, tmp_path):
    result, state = run(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "Replacing the default superuser password",
        "Ensuring role mnist",
        "Ensuring read-only role mnist_reader on keyspace mnist",
        "Replicating system_auth: " + ENV["AUTH_REPLICATION"],
    ]
    assert state["passwords"]["cassandra"] == ADMIN_PASSWORD
    (create,) = statements(state, "CREATE ROLE IF NOT EXISTS mnist ")
    assert create["user"] == "cassandra"
    assert "GRANT CREATE ON ALL KEYSPACES TO mnist;" in create["statement"]

    again, state = run(script, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Replacing the default superuser password" not in again.stdout
    assert not statements(state, "ALTER ROLE cassandra")


@pytest.mark.parametrize(
    ("landed", "alters"),
    [
        # What the image test met: the probe logged in, the ALTER's login a moment later failed.
        pytest.param(False, 2, id="refused-is-tried-again"),
        # The ALTER landed but its answer was lost: the default password no longer works.
        pytest.param(True, 1, id="landed-without-an-answer-is-not-repeated"),
    ],
)
def test_a_failed_password_change(script, tmp_path, landed, alters):
    fault = {"match": "ALTER ROLE cassandra", "times": 1, "lands": landed}
    result, state = run(script, tmp_path, faults=[fault])
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(statements(state, "ALTER ROLE cassandra")) == alters
    assert state["passwords"]["cassandra"] == ADMIN_PASSWORD
    assert "Replicating system_auth" in result.stdout


@pytest.mark.parametrize(
    "match",
    ["CREATE ROLE IF NOT EXISTS mnist ", "CREATE KEYSPACE IF NOT EXISTS", "ALTER KEYSPACE"],
)
def test_each_role_statement_is_tried_again_after_a_failure(script, tmp_path, match):
    result, state = run(script, tmp_path, faults=[{"match": match, "times": 2, "lands": False}])
    assert result.returncode == 0, result.stdout + result.stderr
    assert len([c for c in state["calls"] if match in c["statement"]]) == 3


def test_gives_up_with_a_clear_error_after_the_deadline(script, tmp_path):
    fault = {"match": "ALTER KEYSPACE", "times": 10_000, "lands": False}
    result, state = run(script, tmp_path, faults=[fault], wait_seconds=1)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        "Cassandra at ci-mnist-cassandra: a statement kept failing within 1s"
    )
    assert len(statements(state, "ALTER KEYSPACE")) >= 2


def test_gives_up_when_no_superuser_password_works(script, tmp_path):
    result, state = run(script, tmp_path, admin="someone-elses", wait_seconds=1)
    assert result.returncode == 1
    assert "the superuser login was not accepted within 1s" in result.stderr
    assert not statements(state, "ALTER ROLE")
