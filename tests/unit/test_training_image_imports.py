"""What ``python -m training --feedback`` imports is in the training image (Dockerfile.train).

The image holds the project code Dockerfile.train copies and the distributions of
requirements/train.txt and requirements/train-feedback.txt; neither Flask nor gunicorn nor
most of the gateway. Here, without the image: the modules that reading feedback imports
(training.feedback, the gateway's settings and errors, and the store opened as the
retraining CronJob opens it, for Cassandra and for SQLite) come from a copy of exactly what
the Dockerfile copies, and from distributions of those two locks. The image itself runs the
CronJob's command in tests/images/test_train_image_feedback.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.support.dependencies import PROJECT, read_lock
from tests.support.paths import REPO_ROOT

FIRST_PARTY = ("gateway", "training", "mnist_contract")

# Run with sys.argv[1] (the copied sources) first on the path, as the image's site-packages.
PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from gateway.config import ConfigError  # what training.cli imports to read feedback
from gateway.errors import StoreUnavailable
from training.feedback import open_configured_store, read_feedback

os.environ.update({"CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_KEYSPACE": "mnist"})
store, source = open_configured_store()  # the driver connects on first use: not here
store.close()
del os.environ["CASSANDRA_HOSTS"]
os.environ["SQLITE_PATH"] = os.path.join(sys.argv[2], "predictions.sqlite3")
store, source = open_configured_store()
try:
    assert read_feedback(store, source, holdout_percent=20).labelled == 0
finally:
    store.close()
print(json.dumps({
    name: getattr(module, "__file__", None)
    for name, module in list(sys.modules.items()) if module is not None
}))
"""


def copied_project(destination: Path) -> Path:
    """The project's code as Dockerfile.train's COPY instructions lay it out under /src."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile.train").read_text())
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--") for w in words):
            continue
        *sources, target = words[1:]
        for source in sources:
            if not source.startswith(FIRST_PARTY):
                continue  # the lock files, pyproject.toml, README.md
            path = REPO_ROOT / source
            into = destination / target
            if path.is_dir():
                shutil.copytree(path, into, dirs_exist_ok=True, ignore=_caches)
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, into / path.name)
    return destination


def _caches(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]


def test_reading_feedback_imports_only_what_the_training_image_holds(tmp_path):
    src = copied_project(tmp_path / "src")
    state = tmp_path / "state"
    state.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(src), str(state)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])

    first_party = {
        name: file for name, file in modules.items() if name.split(".")[0] in FIRST_PARTY
    }
    assert "gateway.store.cassandra_store" in first_party
    outside = {n: f for n, f in first_party.items() if f and not Path(f).is_relative_to(src)}
    assert not outside, f"imported from outside what Dockerfile.train copies: {outside}"

    locked = set(read_lock("train")) | set(read_lock("train-feedback"))
    by_module = metadata.packages_distributions()
    imported = {
        canonicalize_name(distribution)
        for name in modules
        if name.split(".")[0] not in (*FIRST_PARTY, *sys.stdlib_module_names)
        for distribution in by_module.get(name.split(".")[0], [])
    } - {canonicalize_name(PROJECT)}
    assert "cassandra-driver" in imported
    assert imported <= locked, f"not in the training image's locks: {imported - locked}"
    assert not {"flask", "gunicorn", "gevent", "prometheus-client"} & imported
